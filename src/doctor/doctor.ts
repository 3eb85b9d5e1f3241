import { existsSync, readFileSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { criuPatchSetGitId } from "../criu-installer.ts";
import { criuGitId, criuMinimumFor, criuVersion, compareVersions, parseVersion } from "../platform/linux/criu.ts";
import { chooseCriu, type CriuChoice, findCriu } from "../platform/linux/criu-choose.ts";
import { embeddedCriuInfo } from "../platform/linux/criu-embedded.ts";
import { type CriuBuild, capabilityChecks, isLacking, NEEDED_CAPABILITIES, parseCapEff } from "./capabilities.ts";
import { formatBytes } from "../format.ts";
import { run, which } from "../platform/linux/exec.ts";
import { nativeHashing } from "../store/sha256x16.ts";

export type CheckStatus = "ok" | "warn" | "fail";

/** One thing autopod needs from the host, and how to fix it when it is missing. */
export interface DoctorCheck {
  id: string;
  title: string;
  status: CheckStatus;
  /** A failed required check makes the host unfit; a failed optional one only warns. */
  required: boolean;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  kernel: string;
  /** The criu autopod runs, where it comes from (configured, system, bundled: the one this binary brought) and why. */
  criu: CriuChoice;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  stateDir: string;
  criuPath?: string;
  /** Minimum free bytes under the state directory (default 1 GiB). */
  minFreeBytes?: number;
  /** Config store.native_hash: false when native page hashing is turned off. Default true. */
  isNativeHashWanted?: boolean;
  /** Routed pod network (network.mode = "routed"): the LAN interface it answers ARP on. */
  routedLanInterface?: string;
}

/** install.sh puts the CRIU installer here; a source checkout has it under scripts/. */
export const INSTALLED_CRIU_SCRIPT = "/usr/local/share/autopod/install-criu.sh";

/** How to get a good CRIU: the one this binary carries when it has one (no compiler, no network), else a build from source. */
function installCriuCommand(): string {
  if (carried) return "autopod criu install (puts the CRIU this binary carries under /usr/local/lib/autopod/criu)";
  return existsSync(INSTALLED_CRIU_SCRIPT) ? `bash ${INSTALLED_CRIU_SCRIPT}` : "bash scripts/install-criu.sh (in an autopod source checkout)";
}

/** Whether this binary carries a CRIU (set once by runDoctor). */
let carried = false;

async function carriesCriu(): Promise<boolean> {
  try {
    return (await embeddedCriuInfo()) !== null;
  } catch {
    return false;
  }
}

/** Run every check. Probing only reads; nothing on the host is changed. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  carried = await carriesCriu();
  const checks = (
    await Promise.all([
      checkKernel(kernel),
      checkPrivileges(opts.criuPath ?? ""),
      checkNamespaces(),
      checkCriu(kernel, opts.criuPath ?? ""),
      checkTool("nftables", "nft", ["nft", "--version"], "apt-get install nftables (CRIU's network lock uses it)", true),
      checkTool("iproute2", "ip", ["ip", "-V"], "apt-get install iproute2", true),
      checkTool("util-linux", "unshare", ["unshare", "--version"], "apt-get install util-linux", true, ["nsenter"]),
      checkCgroupMemory(),
      checkFreeSpace(opts.stateDir, opts.minFreeBytes ?? 1 << 30),
      checkHashing(opts.isNativeHashWanted ?? true),
      checkSystemd(),
      checkRoutedNetwork(opts.routedLanInterface),
    ])
  ).flat();
  const criu = chooseCriu({ configured: opts.criuPath ?? "", kernelRelease: kernel });
  return { ok: checks.every((c) => c.status !== "fail" || !c.required), kernel, criu, checks };
}

async function checkKernel(release: string): Promise<DoctorCheck[]> {
  const v = parseVersion(release);
  const ok = v !== null && compareVersions(v, [5, 10]) >= 0;
  return [
    {
      id: "kernel",
      title: "Linux kernel",
      status: ok ? "ok" : "fail",
      required: true,
      detail: `running ${release}${ok ? "" : "; autopod needs Linux >= 5.10 (overlayfs, time namespaces, CRIU support)"}`,
      fix: ok ? undefined : "boot a kernel >= 5.10",
    },
  ];
}

export { parseCapEff };

async function checkPrivileges(configuredCriu: string): Promise<DoctorCheck[]> {
  const uid = process.getuid?.() ?? -1;
  const caps = parseCapEff(readFileSync("/proc/self/status", "utf8")) ?? 0n;
  const lacking = NEEDED_CAPABILITIES.filter((c) => isLacking(caps, c));
  const missing = lacking.filter((c) => c.isRequired).map((c) => c.name);
  const missingOptional = lacking.filter((c) => !c.isRequired).map((c) => c.name);
  const ok = missing.length === 0;
  const path = findCriu(configuredCriu);
  let criu: CriuBuild | null = null;
  if (path) {
    const gitId = await criuGitId(path);
    criu = { path, gitId, isPatched: gitId?.startsWith("autopod-") ?? false };
  }
  return [
    {
      id: "privileges",
      title: "root or capabilities",
      status: ok ? "ok" : "fail",
      required: true,
      detail: `uid ${uid}; ${ok ? `has ${NEEDED_CAPABILITIES.filter((c) => c.isRequired).length} required capabilities` : `missing ${missing.join(", ")}`}${missingOptional.length ? `; without ${missingOptional.join(", ")} (see below)` : ""}`,
      fix: ok ? undefined : "run autopod as root with its full capability set (the agent restores processes and manages namespaces)",
    },
    ...capabilityChecks(caps, criu, installCriuCommand()),
  ];
}

async function checkNamespaces(): Promise<DoctorCheck[]> {
  const unshare = which("unshare");
  if (!unshare) {
    return [
      { id: "namespaces", title: "namespaces", status: "fail", required: true, detail: "unshare not found, cannot test", fix: "apt-get install util-linux" },
    ];
  }
  const r = await run([unshare, "--pid", "--mount", "--net", "--uts", "--ipc", "--fork", "--", "true"], { timeoutMs: 10_000 }).catch((e: Error) => ({
    exitCode: -1,
    stderr: e.message,
  }));
  const ok = r.exitCode === 0;
  return [
    {
      id: "namespaces",
      title: "pid, mount, net, uts and ipc namespaces",
      status: ok ? "ok" : "fail",
      required: true,
      detail: ok ? "created all five" : `unshare failed: ${r.stderr.trim()}`,
      fix: ok ? undefined : "run as root, on a kernel with CONFIG_{PID,NET,UTS,IPC}_NS, and without a seccomp profile that blocks unshare",
    },
  ];
}

async function checkCriu(kernel: string, configured: string): Promise<DoctorCheck[]> {
  const choice = chooseCriu({ configured, kernelRelease: kernel });
  const path = choice.path;
  const { min, why } = criuMinimumFor(kernel);
  if (!path) {
    return [
      {
        id: "criu",
        title: "CRIU",
        status: "fail",
        required: true,
        detail: configured ? choice.why : `${choice.why}${carried ? " (this binary carries one)" : ""}`,
        fix: `install CRIU >= ${min}: ${installCriuCommand()}`,
      },
      { id: "criu_check", title: "criu check", status: "fail", required: true, detail: "skipped: no criu", fix: `install CRIU >= ${min}` },
      { id: "mem_dirty_track", title: "memory dirty tracking", status: "warn", required: false, detail: "skipped: no criu" },
    ];
  }
  const version = await criuVersion(path);
  const v = version ? parseVersion(version) : null;
  const newEnough = v !== null && compareVersions(v, parseVersion(min)!) >= 0;
  const out: DoctorCheck[] = [
    {
      id: "criu",
      title: "CRIU",
      status: newEnough ? "ok" : "fail",
      required: true,
      detail: newEnough
        ? `${path} version ${version} (>= ${min} needed on Linux ${kernel}): ${choice.why}`
        : `${path} version ${version ?? "unknown"} is too old for this kernel: Linux ${kernel} needs CRIU >= ${min}, because ${why}`,
      fix: newEnough
        ? undefined
        : `install CRIU >= ${min}: ${installCriuCommand()}${choice.source === "configured" ? ", and unset criu in the configuration (it names this one)" : ""}`,
    },
  ];
  const gitId = await criuGitId(path);
  const expected = criuPatchSetGitId();
  out.push({
    id: "criu_patches",
    title: "CRIU patches",
    status: gitId === expected ? "ok" : "warn",
    required: false,
    detail:
      gitId === expected
        ? `built with autopod's CRIU patches (GitID ${gitId}): reads /proc/PID/limits when prlimit64() is refused`
        : gitId?.startsWith("autopod-")
          ? `built with another set of autopod's CRIU patches (GitID ${gitId}, ${expected} expected)`
          : `built without autopod's CRIU patches (GitID ${gitId ?? "none"}, ${expected} expected): without CAP_SYS_RESOURCE, pods whose processes run as other users cannot be checkpointed`,
    fix: gitId === expected ? undefined : `rebuild CRIU with the patches: ${installCriuCommand()}`,
  });
  const check = await run([path, "check"], { timeoutMs: 30_000 });
  const text = (check.stdout + check.stderr).trim();
  const looksGood = check.exitCode === 0 && /Looks good/.test(text);
  out.push({
    id: "criu_check",
    title: "criu check",
    status: looksGood ? "ok" : "fail",
    required: true,
    detail: looksGood ? "Looks good." : `criu check failed (exit ${check.exitCode}): ${lastLines(text, 3)}`,
    fix: looksGood
      ? undefined
      : newEnough
        ? "see the criu check output; the kernel may lack a feature CRIU needs"
        : `install CRIU >= ${min}: ${installCriuCommand()}`,
  });
  const dirty = await run([path, "check", "--feature", "mem_dirty_track"], { timeoutMs: 30_000 });
  const tracked = dirty.exitCode === 0;
  out.push({
    id: "mem_dirty_track",
    title: "memory dirty tracking",
    status: tracked ? "ok" : "warn",
    required: false,
    detail: tracked
      ? "available: pre-dump can track changed pages"
      : "not available (no soft-dirty bit in this kernel): incremental migration relies on content hashing instead",
  });
  return out;
}

async function checkTool(id: string, bin: string, argv: string[], fix: string, required: boolean, more: string[] = []): Promise<DoctorCheck[]> {
  const path = which(bin);
  const missingMore = more.filter((m) => !which(m));
  if (!path || missingMore.length) {
    return [{ id, title: id, status: "fail", required, detail: `${[...(path ? [] : [bin]), ...missingMore].join(", ")} not found`, fix }];
  }
  const r = await run([path, ...argv.slice(1)], { timeoutMs: 10_000 });
  return [{ id, title: id, status: "ok", required, detail: `${path}: ${firstLine(r.stdout || r.stderr)}` }];
}

async function checkCgroupMemory(): Promise<DoctorCheck[]> {
  const v2 = "/sys/fs/cgroup/cgroup.controllers";
  let detail = "";
  let ok = false;
  if (existsSync(v2) && readFileSync(v2, "utf8").split(/\s+/).includes("memory")) {
    ok = true;
    detail = "cgroup v2 with the memory controller";
  } else if (existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
    ok = true;
    detail = "cgroup v1 memory controller at /sys/fs/cgroup/memory";
  } else {
    detail = "no cgroup memory controller found (v2 memory or v1 /sys/fs/cgroup/memory)";
  }
  return [
    {
      id: "cgroup_memory",
      title: "cgroup memory controller",
      status: ok ? "ok" : "fail",
      required: true,
      detail,
      fix: ok ? undefined : "mount cgroup v2 at /sys/fs/cgroup with the memory controller enabled (cgroup_enable=memory)",
    },
  ];
}

/** How pages are hashed: 16 at a time with AVX-512 (about twice as fast), four interleaved with the SHA extensions (1.8x), or one by one. Never a failure. */
async function checkHashing(isWanted: boolean): Promise<DoctorCheck[]> {
  const { why, way } = nativeHashing(isWanted);
  const detail = {
    on: way === "sha-ni" ? "SHA-256 of 4 pages at a time with the SHA extensions" : "SHA-256 of 16 pages at a time with AVX-512",
    "turned off": "SHA-256 one page at a time: store.native_hash is false",
    "not built in": "SHA-256 one page at a time: this binary was built without its native hashing (no C compiler)",
    "no AVX-512 or SHA extensions": "SHA-256 one page at a time (this CPU has neither AVX-512 nor the SHA extensions)",
    "cannot load": "SHA-256 one page at a time: the native hashing could not be loaded",
  }[why];
  const isWorthFixing = why === "not built in" || why === "cannot load";
  return [
    {
      id: "page_hashing",
      title: "page hashing",
      status: isWorthFixing ? "warn" : "ok",
      required: false,
      detail,
      fix: isWorthFixing
        ? "build autopod where gcc is installed (apt-get install gcc): checkpoints and restores hash about twice as fast on CPUs with AVX-512 or the SHA extensions"
        : undefined,
    },
  ];
}

async function checkFreeSpace(stateDir: string, minFree: number): Promise<DoctorCheck[]> {
  let dir = stateDir;
  while (!existsSync(dir) && dir !== "/") dir = dirname(dir);
  const fs = statfsSync(dir);
  const free = Number(fs.bavail) * Number(fs.bsize);
  const ok = free >= minFree;
  return [
    {
      id: "free_space",
      title: "free space under the state directory",
      status: ok ? "ok" : "fail",
      required: true,
      detail: `${formatBytes(free)} free at ${dir}${dir === stateDir ? "" : ` (${stateDir} does not exist yet)`}; ${formatBytes(minFree)} needed`,
      fix: ok ? undefined : `free space on the file system of ${dir}, or set state_dir to a larger one`,
    },
  ];
}

async function checkSystemd(): Promise<DoctorCheck[]> {
  const running = existsSync("/run/systemd/system");
  return [
    {
      id: "systemd",
      title: "systemd",
      status: running ? "ok" : "warn",
      required: false,
      detail: running ? "systemd is the init system: autopod.service can run the agent" : "systemd is not running: start the agent another way",
      fix: running ? undefined : "run `autopod agent` under your init system or a supervisor",
    },
  ];
}

function firstLine(s: string): string {
  return s.trim().split("\n")[0] ?? "";
}

function lastLines(s: string, n: number): string {
  return s.split("\n").filter(Boolean).slice(-n).join(" | ");
}

/** Routed pod network: the LAN interface must exist (the agent turns on forwarding and proxy ARP on it; gratuitous ARP needs no tool). */
async function checkRoutedNetwork(lan: string | undefined): Promise<DoctorCheck[]> {
  if (lan === undefined) return [];
  const ip = which("ip");
  const r = ip ? await run([ip, "-j", "link", "show", "dev", lan], { timeoutMs: 10_000 }).catch(() => null) : null;
  const link = r?.exitCode === 0 ? (JSON.parse(r.stdout || "[]") as Array<{ operstate?: string; address?: string }>)[0] : undefined;
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8").trim();
    } catch {
      return "?";
    }
  };
  if (!link) {
    return [
      {
        id: "routed-network",
        title: "routed pod network",
        status: "fail",
        required: true,
        detail: `the LAN interface "${lan}" (network.lan_interface) does not exist`,
        fix: "set network.lan_interface to this host's uplink (see `ip link`)",
      },
    ];
  }
  const sysctls = `ip_forward ${read("/proc/sys/net/ipv4/ip_forward")}, proxy_arp ${read(`/proc/sys/net/ipv4/conf/${lan}/proxy_arp`)}`;
  return [
    {
      id: "routed-network",
      title: "routed pod network",
      status: "ok",
      required: true,
      detail: `LAN interface ${lan} (${link.address ?? "no address"}, ${link.operstate ?? "state unknown"}); ${sysctls} (the agent turns both on)`,
    },
  ];
}
