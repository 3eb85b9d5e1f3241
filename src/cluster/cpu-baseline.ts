/**
 * The cluster's CPU baseline: the CPU features every member has, and how a
 * new pod is held to it. glibc picks code paths (AVX2, AVX-512 string
 * routines, the x86-64-v3/v4 library directories) once, when a process
 * starts; restored on a CPU without them it dies with SIGILL. A pod started
 * with `GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,...` for every feature some
 * member lacks picks only what all of them have (docs/cluster.md).
 */

/**
 * /proc/cpuinfo flag -> the name glibc's `glibc.cpu.hwcaps` tunable takes to
 * turn it off (sysdeps/x86/cpu-tunables.c; names are case-sensitive, and an
 * unknown one is ignored). Linux calls LZCNT "abm".
 */
export const GLIBC_HWCAPS: Readonly<Record<string, string>> = {
  avx: "AVX",
  avx2: "AVX2",
  avx512f: "AVX512F",
  avx512bw: "AVX512BW",
  avx512cd: "AVX512CD",
  avx512dq: "AVX512DQ",
  avx512er: "AVX512ER",
  avx512pf: "AVX512PF",
  avx512vl: "AVX512VL",
  bmi1: "BMI1",
  bmi2: "BMI2",
  cmov: "CMOV",
  cx8: "CX8",
  erms: "ERMS",
  fma: "FMA",
  fma4: "FMA4",
  abm: "LZCNT",
  movbe: "MOVBE",
  popcnt: "POPCNT",
  rtm: "RTM",
  sse2: "SSE2",
  ssse3: "SSSE3",
  sse4_1: "SSE4_1",
  sse4_2: "SSE4_2",
  xsave: "XSAVE",
  xsavec: "XSAVEC",
};

/**
 * CPU features a restored process may have chosen code paths by (glibc's
 * hwcaps, and programs that ask cpuid themselves): instruction sets whose
 * instructions fault where they are missing. Features that only change speed
 * (erms, fsrm: `rep movsb` runs everywhere) are not among them.
 */
export const RELEVANT_CPU_FLAGS: ReadonlySet<string> = new Set([
  "pni",
  "ssse3",
  "sse4_1",
  "sse4_2",
  "sse4a",
  "popcnt",
  "abm",
  "cx16",
  "movbe",
  "avx",
  "avx2",
  "fma",
  "fma4",
  "f16c",
  "bmi1",
  "bmi2",
  "adx",
  "aes",
  "pclmulqdq",
  "vaes",
  "vpclmulqdq",
  "gfni",
  "sha_ni",
  "xsave",
  "xsavec",
  "rdrand",
  "rdseed",
  "rtm",
  "avx_vnni",
  "avx512f",
  "avx512bw",
  "avx512cd",
  "avx512dq",
  "avx512vl",
  "avx512er",
  "avx512pf",
  "avx512ifma",
  "avx512vbmi",
  "avx512_vbmi2",
  "avx512_vnni",
  "avx512_bitalg",
  "avx512_vpopcntdq",
  "avx512_bf16",
  "avx512_fp16",
]);

/** The features every member has (each member's /proc/cpuinfo flags), sorted. */
export function commonFlags(members: ReadonlyArray<readonly string[]>): string[] {
  if (members.length === 0) return [];
  const [first, ...rest] = members;
  const sets = rest.map((m) => new Set(m));
  return [...new Set(first)].filter((f) => sets.every((s) => s.has(f))).sort();
}

/** What a pod started on this host holds back so it runs on every member, and what it may still use. */
export interface CpuPlan {
  /** glibc's names of the features this host has and some member lacks, as glibc.cpu.hwcaps turns them off. */
  hidden: string[];
  /** The /proc/cpuinfo flags the pod's processes may use: this host's, less the hidden ones. */
  features: string[];
}

/** The plan for a pod started on a host with `hostFlags` in a cluster whose common flags are `baseline`. */
export function planFor(hostFlags: readonly string[], baseline: readonly string[]): CpuPlan {
  const common = new Set(baseline);
  const hiddenFlags = new Set(hostFlags.filter((f) => !common.has(f) && GLIBC_HWCAPS[f] !== undefined));
  return {
    hidden: [...hiddenFlags].map((f) => GLIBC_HWCAPS[f]!).sort(),
    features: hostFlags.filter((f) => !hiddenFlags.has(f)),
  };
}

const HWCAPS = "glibc.cpu.hwcaps";

/**
 * GLIBC_TUNABLES with `hidden` turned off, merged into the value the user set
 * (NAME=VALUE entries separated by ':'): our entries go after theirs in the
 * one glibc.cpu.hwcaps entry, so a "+X" of theirs cannot turn one back on.
 */
export function withHiddenHwcaps(userValue: string | undefined, hidden: readonly string[]): string | undefined {
  if (hidden.length === 0) return userValue;
  const ours = hidden.map((h) => `-${h}`).join(",");
  const entries = userValue ? userValue.split(":").filter((e) => e !== "") : [];
  const i = entries.findIndex((e) => e.startsWith(`${HWCAPS}=`));
  if (i < 0) entries.push(`${HWCAPS}=${ours}`);
  else {
    const theirs = entries[i]!.slice(HWCAPS.length + 1);
    entries[i] = `${HWCAPS}=${theirs ? `${theirs},` : ""}${ours}`;
  }
  return entries.join(":");
}
