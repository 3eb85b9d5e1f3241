/**
 * The replaced-code check: processes still running executables or libraries
 * that a package update has deleted or replaced, found in /proc/PID/maps
 * (executable mappings only) and /proc/PID/exe, and interpreters (Python,
 * Perl, Ruby) running scripts or modules replaced after they started
 * (interpreted-code.ts); grouped by process and by systemd unit or pod, each
 * file with the package that owns it.
 *
 * A mapping counts when its file is deleted, or when the file now at its path
 * (seen from the process's own root) is a different inode on the same device.
 * A different device proves nothing (overlayfs and btrfs subvolumes report
 * other devices in maps than in stat: a needrestart false alarm), so it is
 * not counted. Paths where no package installs anything are ignored, in the
 * report and the metrics alike, as needrestart ignores them: /tmp, /var/tmp,
 * /run, /dev, memfd, SysV shared memory, /proc and /sys.
 *
 * Every such process is named. Those that make the verdict "reboot_required"
 * (the update is not in effect until they restart; a reboot restarts them
 * all) are the host's processes on system files: under /usr (but not
 * /usr/local), /bin, /sbin, /lib*, /opt or /etc, where packages install.
 * The rest are named but do not count: a rebuilt binary in a home or build
 * directory (or autopod's own agent after an upgrade) is not an OS patch,
 * and pod processes run their pod's own files, which patching the host does
 * not change, and they move rather than restart.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Checker, CheckOptions, CheckResult, GroupReason, ProcessReason, Reason, ReplacedFile } from "./checker.ts";
import { findFileOwners } from "./file-owners.ts";
import { interpreterOf, newScanCache, bootTimeFromUptime, processStartSeconds, replacedSources } from "./interpreted-code.ts";
import { detectPackageManager } from "./package-manager.ts";
import { splitDev } from "./proc-locks.ts";
import { isExecutableFileMapping, type Mapping, parseProcMaps } from "./proc-maps.ts";
import { parseProcessCgroup } from "./process-cgroup.ts";

const IGNORED = [
  /^\/tmp\//,
  /^\/var\/tmp\//,
  /^\/run\//,
  /^\/dev\//,
  /^\/memfd:/,
  /^\/SYSV[0-9a-f]{8}$/,
  /^\/proc\//,
  /^\/sys\//,
  /^\/\[/,
  /^\/anon_hugepage$/,
  /^\/dmabuf:/,
];

const SYSTEM = /^\/(usr\/(?!local\/)|bin\/|sbin\/|lib\/|lib32\/|lib64\/|libx32\/|opt\/|etc\/)/;

/** True for a path where the package manager installs files. */
export function isSystemPath(path: string): boolean {
  return SYSTEM.test(path);
}

/** True when a process on replaced code means the host needs a restart of it: a host process on a replaced system file. */
export function countsForVerdict(p: ProcessReason): boolean {
  return p.pod === undefined && p.files.some((f) => isSystemPath(f.path));
}

/** True for a mapped path that is never an installed file. */
export function isIgnoredPath(path: string): boolean {
  return IGNORED.some((r) => r.test(path));
}

export type FileIdentity = { major: number; minor: number; inode: number } | null;

/**
 * The replaced files among a process's mappings, given how to look up the
 * file now at a path (null when it cannot be seen). Pure.
 */
export function replacedFiles(maps: readonly Mapping[], exe: string | null, identityOf: (path: string) => FileIdentity): ReplacedFile[] {
  const out = new Map<string, ReplacedFile>();
  for (const m of maps) {
    if (!isExecutableFileMapping(m) || isIgnoredPath(m.path) || out.has(m.path)) continue;
    if (m.deleted) {
      out.set(m.path, { path: m.path, change: "deleted" });
      continue;
    }
    const now = identityOf(m.path);
    if (now && now.major === m.major && now.minor === m.minor && now.inode !== m.inode) out.set(m.path, { path: m.path, change: "replaced" });
  }
  if (exe?.endsWith(" (deleted)")) {
    const path = exe.slice(0, -" (deleted)".length);
    if (!isIgnoredPath(path) && !out.has(path)) out.set(path, { path, change: "deleted" });
  }
  return [...out.values()];
}

/** Group processes by pod, else systemd unit, else "other". */
export function groupProcesses(procs: readonly ProcessReason[]): GroupReason[] {
  const groups = new Map<string, GroupReason>();
  for (const p of procs) {
    const [group, name] = p.pod ? (["pod", p.pod] as const) : p.unit ? (["unit", p.unit] as const) : (["other", p.command] as const);
    const key = `${group}\0${name}`;
    const g = groups.get(key) ?? { kind: "group", group, name, pids: [] };
    g.pids.push(p.pid);
    groups.set(key, g);
  }
  return [...groups.values()].sort((a, b) => a.group.localeCompare(b.group) || a.name.localeCompare(b.name));
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}

/** Scan every process under a procfs, ours included; processes we may not read are listed as "pid (comm)". */
export async function scanProcesses(procDir: string): Promise<{ processes: ProcessReason[]; unreadable: string[] }> {
  const pids = (await readdir(procDir)).filter((e) => /^\d+$/.test(e)).map(Number);
  const identities = new Map<string, Promise<FileIdentity>>();
  const processes: ProcessReason[] = [];
  const unreadable: string[] = [];
  const sources = newScanCache();
  const bootTime = bootTimeFromUptime((await readText(join(procDir, "uptime"))) ?? "", Date.now());
  const ownRoot = (await readlink(join(procDir, "self/ns/mnt")).catch(() => "?")) + (await readlink(join(procDir, "self/root")).catch(() => "?"));
  for (const pid of pids.sort((a, b) => a - b)) {
    const dir = join(procDir, String(pid));
    let mapsText: string;
    try {
      mapsText = await readFile(join(dir, "maps"), "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") unreadable.push(`${pid} (${((await readText(join(dir, "comm"))) ?? "?").trim()})`); // else it exited meanwhile
      continue;
    }
    if (mapsText === "") continue; // kernel thread
    const maps = parseProcMaps(mapsText);
    const exe = await readlink(join(dir, "exe")).catch(() => null);
    // Paths resolve in the process's own root: a pod's /usr is not the host's.
    const rootKey = (await readlink(join(dir, "ns/mnt")).catch(() => "?")) + (await readlink(join(dir, "root")).catch(() => "?"));
    const lookups = new Map<string, FileIdentity>();
    for (const m of maps) {
      if (!isExecutableFileMapping(m) || m.deleted || isIgnoredPath(m.path) || lookups.has(m.path)) continue;
      const key = `${rootKey}\0${m.path}`;
      let p = identities.get(key);
      if (!p) {
        p = stat(join(dir, "root", m.path), { bigint: true }).then(
          (st) => ({ ...splitDev(st.dev), inode: Number(st.ino) }),
          () => null,
        );
        identities.set(key, p);
      }
      lookups.set(m.path, await p);
    }
    const files = replacedFiles(maps, exe, (path) => lookups.get(path) ?? null);
    const interp = exe ? interpreterOf(exe) : null;
    const startedAt = bootTime === null ? null : processStartSeconds((await readText(join(dir, "stat"))) ?? "", bootTime);
    if (interp && exe && startedAt !== null) {
      const scripts = await replacedSources({ dir, interp, exe, startedAt, rootKey, followImports: rootKey === ownRoot }, sources);
      for (const f of scripts) if (!isIgnoredPath(f.path)) files.push({ ...f, loaded_by: interp });
    }
    if (files.length === 0) continue;
    const command = ((await readText(join(dir, "comm"))) ?? "").trim();
    const group = parseProcessCgroup((await readText(join(dir, "cgroup"))) ?? "");
    processes.push({ kind: "process", pid, command, ...group, files });
  }
  return { processes, unreadable };
}

/** Name each file's owning package, where the package database knows it. */
async function addOwners(processes: ProcessReason[], opts: CheckOptions): Promise<void> {
  if (processes.length === 0) return;
  // Only the host's own processes: a pod's files are not the host's packages.
  const hostFiles = processes.filter((p) => p.pod === undefined).flatMap((p) => p.files.map((f) => f.path));
  const owners = await findFileOwners(await detectPackageManager(opts.paths), hostFiles, opts);
  for (const p of processes) {
    if (p.pod !== undefined) continue;
    p.files = p.files.map((f) => (owners.has(f.path) ? { ...f, package: owners.get(f.path)! } : f));
  }
}

export const replacedCodeChecker: Checker = {
  name: "replaced_code",
  source: "/proc/PID/maps (executable mappings), /proc/PID/exe, /proc/PID/cgroup; interpreters' scripts and modules; dpkg-query -S",
  async check(opts: CheckOptions): Promise<CheckResult> {
    const { processes, unreadable } = await scanProcesses(opts.paths.proc);
    await addOwners(processes, opts);
    const groups = groupProcesses(processes);
    const notes: Reason[] = unreadable.length
      ? [
          {
            kind: "note",
            message: `cannot read the maps of ${unreadable.length} process${unreadable.length === 1 ? "" : "es"} (permission denied): pid ${unreadable.slice(0, 5).join(", ")}${unreadable.length > 5 ? ", ..." : ""}`,
          },
        ]
      : [];
    const unseen = unreadable.length
      ? `; ${unreadable.length} process${unreadable.length === 1 ? "" : "es"} could not be read${process.getuid?.() === 0 ? "" : " (not root)"}`
      : "";
    if (processes.length === 0) return { verdict: "ok", summary: `no process runs deleted or replaced code${unseen}`, reasons: notes };
    const counted = processes.filter(countsForVerdict);
    const describe = (procs: readonly ProcessReason[]) => {
      const gs = groupProcesses(procs);
      const shown = gs.slice(0, 5).map((g) => `${g.group === "other" ? "" : `${g.group} `}${g.name} (pid ${g.pids.join(", ")})`);
      return `${shown.join(", ")}${gs.length > 5 ? `, +${gs.length - 5} more` : ""}`;
    };
    const others = processes.filter((p) => !countsForVerdict(p));
    const parts: string[] = [];
    if (counted.length) parts.push(`${counted.length} process${counted.length === 1 ? "" : "es"} on replaced system files: ${describe(counted)}`);
    if (others.length) parts.push(`not counted (pods, or files outside system paths): ${describe(others)}`);
    return { verdict: counted.length ? "reboot_required" : "ok", summary: parts.join("; ") + unseen, reasons: [...processes, ...groups, ...notes] };
  },
};
