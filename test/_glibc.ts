/**
 * What a process's glibc selected, read from `ld.so --list-diagnostics`
 * (glibc >= 2.33): the CPU features it counts as usable ("active" bits of its
 * cpuid words) and the glibc-hwcaps subdirectories (x86-64-v2/v3/v4) it
 * would load libraries from.
 */

/** glibc's feature name -> [cpu_features index, register (eax 0, ebx 1, ecx 2, edx 3), bit] (sysdeps/x86/include/cpu-features.h). */
const FEATURE_BITS: Readonly<Record<string, readonly [number, number, number]>> = {
  SSSE3: [0, 2, 9],
  FMA: [0, 2, 12],
  SSE4_1: [0, 2, 19],
  SSE4_2: [0, 2, 20],
  MOVBE: [0, 2, 22],
  POPCNT: [0, 2, 23],
  XSAVE: [0, 2, 26],
  AVX: [0, 2, 28],
  BMI1: [1, 1, 3],
  AVX2: [1, 1, 5],
  BMI2: [1, 1, 8],
  ERMS: [1, 1, 9],
  AVX512F: [1, 1, 16],
  AVX512DQ: [1, 1, 17],
  AVX512CD: [1, 1, 28],
  AVX512BW: [1, 1, 30],
  AVX512VL: [1, 1, 31],
  LZCNT: [2, 2, 5],
};

export interface GlibcSelection {
  /** The features above that glibc counts as usable. */
  usable: Set<string>;
  /** The glibc-hwcaps subdirectories it uses, best first. */
  hwcapsSubdirs: string[];
  /** Its GLIBC_TUNABLES, as it saw it ("" when unset). */
  tunables: string;
}

export function glibcSelection(diagnostics: string): GlibcSelection {
  const words = new Map<string, number>();
  for (const m of diagnostics.matchAll(/^x86\.cpu_features\.features\[0x([0-9a-f]+)\]\.(?:active|usable)\[0x([0-9a-f]+)\]=0x([0-9a-f]+)$/gm)) {
    words.set(`${Number.parseInt(m[1]!, 16)}/${Number.parseInt(m[2]!, 16)}`, Number.parseInt(m[3]!, 16));
  }
  if (words.size === 0) throw new Error(`Not the output of ld.so --list-diagnostics: ${diagnostics.slice(0, 200)}`);
  const usable = new Set<string>();
  for (const [name, [index, reg, bit]] of Object.entries(FEATURE_BITS)) {
    const w = words.get(`${index}/${reg}`);
    if (w !== undefined && (w >>> bit) & 1) usable.add(name);
  }
  const subdirs = /^dl_hwcaps_subdirs="([^"]*)"$/m.exec(diagnostics)?.[1]?.split(":") ?? [];
  const active = Number.parseInt(/^dl_hwcaps_subdirs_active=0x([0-9a-f]+)$/m.exec(diagnostics)?.[1] ?? "0", 16);
  const tunables = /^env\[0x[0-9a-f]+\]="GLIBC_TUNABLES=([^"]*)"$/m.exec(diagnostics)?.[1] ?? "";
  return { usable, hwcapsSubdirs: subdirs.filter((_, i) => (active >>> i) & 1), tunables };
}

/** Does glibc know where `name` is, so that the test can check it? */
export function isCheckable(name: string): boolean {
  return name in FEATURE_BITS;
}
