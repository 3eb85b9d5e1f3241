/**
 * Runs `criu dump` and `criu restore` for a pod. Only argument arrays, never a
 * shell string. The pod's net namespace is external (the agent owns it), its
 * root is given with --root, and bind mounts from the host are external
 * mounts mapped by key.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statfsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { CriuDumpOptions, CriuRestoreOptions, ExternalMount } from "../checkpoint-host.ts";
import { siblingDirs } from "./cgroup.ts";
import { joinCgroupsArgv } from "./cgroup-exec.ts";
import { run, which } from "./exec.ts";
import { deleteTablesNetlink, listTablesNetlink } from "./nft-netlink.ts";

/** `criu dump` as the checkpoint host asks for it, plus how long it may take. */
export type { ExternalMount };

export interface DumpOptions extends CriuDumpOptions {
  timeoutMs?: number;
}

/** `criu restore` as the checkpoint host asks for it, plus its limits. */
export interface RestoreOptions extends CriuRestoreOptions {
  /** Deadline of the whole restore; by default restoreDeadlineMs of the image's size. */
  timeoutMs?: number;
  /** CRIU is killed when its restore.log grows past this (default RESTORE_LOG_CAP). */
  logCapBytes?: number;
}

/**
 * The most CRIU's restore.log may grow to: a real restore at -v4 writes a
 * few hundred KiB; an image CRIU loops on made it write 6 MB/s until the disk
 * was full (fuzz finding P1).
 */
export const RESTORE_LOG_CAP = 64 << 20;

/**
 * How long a restore of an image of `bytes` may take: 60 s, plus 1 s per
 * 16 MiB (CRIU restores memory at hundreds of MB/s; this is 16 MB/s), at most
 * 30 minutes. A restore that passes it is killed, not waited on for good.
 */
export function restoreDeadlineMs(bytes: number): number {
  return Math.min(30 * 60_000, 60_000 + Math.ceil(bytes / (16 << 20)) * 1000);
}

/** Bytes of the regular files directly in `dir` (a CRIU images directory is flat). */
export function imageBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isFile()) total += statSync(join(dir, e.name)).size;
  return total;
}

export class CriuError extends Error {
  override name = "CriuError";
  constructor(
    readonly action: "dump" | "restore",
    readonly exitCode: number,
    readonly logFile: string,
    readonly firstError: string,
  ) {
    const hint = criuErrorHint(firstError);
    super(`criu ${action} failed (exit ${exitCode}): ${firstError || "see " + logFile}${hint ? `; ${hint}` : ""}`);
  }
}

/** What to do about a CRIU error autopod knows the cause of; "" for others. */
export function criuErrorHint(firstError: string): string {
  if (/Can't get rlimit \d+: Operation not permitted/.test(firstError)) {
    return "a process of the pod runs as another user and this host's root lacks CAP_SYS_RESOURCE, which CRIU needs to read its resource limits: install the CRIU with autopod's patches, which reads /proc/PID/limits instead (scripts/install-criu.sh; `autopod doctor` shows which CRIU is in use)";
  }
  return "";
}

/** The CRIU run's first real error line, skipping the harmless RLIMIT_NOFILE one. */
export function firstCriuError(log: string): string {
  for (const line of log.split("\n")) {
    if (!/Error \(/.test(line)) continue;
    if (/RLIMIT_NOFILE/.test(line)) continue;
    return line.replace(/^\(\s*[\d.]+\)\s*/, "").trim();
  }
  return "";
}

const NETNS_KEY = "podnet";

export function dumpArgv(o: DumpOptions, logName = "dump.log"): string[] {
  const argv = [
    o.criu,
    "dump",
    "-t",
    String(o.pid),
    "-D",
    o.imagesDir,
    "-o",
    logName,
    "-v4",
    "--tcp-established",
    // Services lock their files (databases: fcntl locks on their data): without it, any held lock fails the dump.
    "--file-locks",
    // Under autopod's own lock, CRIU's would only add its making and deleting (an nftables commit each) to the freeze.
    "--network-lock",
    o.isNetworkLocked ? "skip" : "nftables",
    "--external",
    `net[${o.netnsInode}]:${NETNS_KEY}`,
  ];
  for (const m of o.externalMounts) argv.push("--external", `mnt[${m.podPath}]:${m.key}`);
  if (o.leave === "running") argv.push("--leave-running");
  if (o.leave === "stopped") argv.push("--leave-stopped");
  return argv;
}

export function restoreArgv(o: RestoreOptions, netnsFd: number, pidFile: string, logName = "restore.log"): string[] {
  const argv = [
    o.criu,
    "restore",
    "-D",
    o.imagesDir,
    ...(o.workDir ? ["-W", o.workDir] : []),
    "-o",
    logName,
    "-v4",
    "-d",
    "--root",
    o.root,
    "--pidfile",
    pidFile,
    // Takes back the locks the dump recorded (--file-locks there); without it they would be lost.
    "--file-locks",
    "--network-lock",
    o.isNetworkLocked ? "skip" : "nftables",
    "--inherit-fd",
    `fd[${netnsFd}]:${NETNS_KEY}`,
  ];
  if (o.cgroup) argv.push("--manage-cgroups=ignore");
  if (o.leaveStopped) argv.push("--leave-stopped");
  // Post-copy: the pages come from `criu lazy-pages` listening in the same work directory.
  if (o.lazyPages) argv.push("--lazy-pages");
  argv.push(o.tcpEstablished ? "--tcp-established" : "--tcp-close");
  for (const m of o.externalMounts) argv.push("--external", `mnt[${m.key}]:${m.hostPath}`);
  return argv;
}

export async function criuDump(o: DumpOptions): Promise<{ durationMs: number }> {
  const started = performance.now();
  const proc = Bun.spawn(dumpArgv(o), { stdio: ["ignore", "pipe", "pipe"] });
  o.onSpawn?.(proc.pid);
  const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 600_000);
  const [, stderr, exitCode] = await outputOf(proc);
  clearTimeout(timer);
  if (exitCode !== 0) throw await errorFrom("dump", exitCode, join(o.imagesDir, "dump.log"), stderr);
  return { durationMs: performance.now() - started };
}

/** How long CRIU's output is still read once CRIU has exited. */
export const OUTPUT_GRACE_MS = 2000;

/**
 * CRIU's stdout, stderr and exit status. The tasks CRIU forks inherit its
 * pipes: when CRIU is killed (or dies) while they live on, the pipes never
 * reach their end (fuzz finding: an fd table naming fd 1 twice left CRIU
 * waiting for good, and once killed at its deadline, its half-restored
 * tasks kept the restore's answer waiting for good). So once CRIU has
 * exited, its output is read for OUTPUT_GRACE_MS more at most.
 */
export async function outputOf(proc: {
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array>;
  exited: Promise<number>;
}): Promise<[string, string, number]> {
  const stdout = new Response(proc.stdout).text();
  const stderr = new Response(proc.stderr).text();
  const exitCode = await proc.exited;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), OUTPUT_GRACE_MS);
  });
  const both = await Promise.race([Promise.all([stdout, stderr]), late]);
  clearTimeout(timer);
  if (both === null) {
    stdout.catch(() => undefined);
    stderr.catch(() => undefined);
    return ["", "(CRIU's output was cut: processes it started still hold it)", exitCode];
  }
  return [both[0], both[1], exitCode];
}

/** Restore detached (-d); returns the host pid of the restored pod pid 1. */
export async function criuRestore(o: RestoreOptions): Promise<{ pid: number; durationMs: number }> {
  const outDir = o.workDir ?? o.imagesDir;
  const pidFile = join(outDir, "restore.pid");
  const fd = openSync(o.netnsPath, "r");
  try {
    // Bun.spawn passes extra fds as stdio[3..]: the namespace is fd 3 in criu.
    let argv = restoreArgv(o, 3, pidFile);
    if (o.cgroup) argv = inCgroup(o.cgroup, argv);
    const started = performance.now();
    const logFile = join(outDir, "restore.log");
    const deadline = o.timeoutMs ?? restoreDeadlineMs(imageBytes(o.imagesDir));
    const cap = o.logCapBytes ?? RESTORE_LOG_CAP;
    const proc = Bun.spawn(argv, { stdio: ["ignore", "pipe", "pipe", fd] });
    o.onSpawn?.(proc.pid);
    let killedFor = "";
    const kill = (why: string) => {
      if (killedFor) return;
      killedFor = why;
      proc.kill("SIGKILL");
    };
    const timer = setTimeout(() => kill(`it ran past its deadline of ${Math.round(deadline / 1000)} s`), deadline);
    // CRIU writes the log as root wherever the state lives: it must not fill that file system whatever the image says.
    const watch = setInterval(() => {
      const size = logSize(logFile);
      if (size > cap) kill(`its log ${logFile} grew past ${cap} bytes (${size})`);
    }, 250);
    const [, stderr, exitCode] = await outputOf(proc);
    clearTimeout(timer);
    clearInterval(watch);
    if (killedFor) throw new CriuError("restore", exitCode, logFile, `killed because ${killedFor}`);
    if (exitCode !== 0) throw await errorFrom("restore", exitCode, logFile, stderr);
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    return { pid, durationMs: performance.now() - started };
  } finally {
    closeSync(fd);
  }
}

/**
 * argv run from inside the pod's cgroup and its siblings (v1's cpu and pids
 * hierarchies): see joinCgroupsArgv. The cgroup directory is the agent's own.
 */
export function inCgroup(cgroup: string, argv: string[]): string[] {
  return joinCgroupsArgv([cgroup, ...siblingDirs(cgroup)], argv);
}

export async function errorFrom(action: "dump" | "restore", exitCode: number, logFile: string, stderr: string): Promise<CriuError> {
  const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : stderr;
  let first = firstCriuError(log) || stderr.trim().split("\n").pop() || "";
  // On a full disk CRIU's own log is cut short: say what it could not.
  if (isFull(dirname(logFile)) && !/No space left/.test(first)) first = `No space left on device under ${dirname(logFile)}${first ? ` (${first.trim()})` : ""}`;
  return new CriuError(action, exitCode, logFile, first);
}

function logSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function isFull(dir: string): boolean {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize) < 1 << 20;
  } catch {
    return false;
  }
}

/** nft's `list tables` output -> the CRIU network-lock tables, e.g. ["inet CRIU-1234"]. */
export function criuLockTables(nftListTables: string): Array<{ family: string; name: string }> {
  const out: Array<{ family: string; name: string }> = [];
  for (const line of nftListTables.split("\n")) {
    const m = /^table\s+(\S+)\s+(CRIU-\S+)\s*$/.exec(line.trim());
    if (m) out.push({ family: m[1]!, name: m[2]! });
  }
  return out;
}

/**
 * A failed dump or restore can leave CRIU's nftables lock in the pod's net
 * namespace, silently dropping every packet. Remove any such table.
 */
export async function removeNetworkLock(netnsPath: string): Promise<string[]> {
  try {
    // Through netlink (no process: a migration's restore lifts the locks in its freeze).
    const tables = listTablesNetlink(netnsPath).filter((t) => t.name.startsWith("CRIU-"));
    deleteTablesNetlink(netnsPath, tables);
    return tables.map((t) => `${t.family} ${t.name}`);
  } catch {
    // nft says why, or manages
  }
  const nft = which("nft");
  const nsenter = which("nsenter");
  if (!nft || !nsenter) return [];
  const list = await run([nsenter, `--net=${netnsPath}`, "--", nft, "list", "tables"], { timeoutMs: 10_000 });
  if (list.exitCode !== 0) return [];
  const removed: string[] = [];
  for (const t of criuLockTables(list.stdout)) {
    const r = await run([nsenter, `--net=${netnsPath}`, "--", nft, "delete", "table", t.family, t.name], { timeoutMs: 10_000 });
    if (r.exitCode === 0) removed.push(`${t.family} ${t.name}`);
  }
  return removed;
}
