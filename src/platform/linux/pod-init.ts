/**
 * `autopod __pod-init PLAN`: the first process of a new pod. The launcher
 * started it as pid 1 of fresh pid, mount, uts and ipc namespaces, inside the
 * pod's net namespace and memory cgroup. It builds the pod's root, pivots into
 * it, and execs the pod's command, which then is pid 1 and a session leader
 * with only fds 0-2 open (stdin /dev/null, stdout and stderr the pod's log)
 * and a reduced capability bounding set.
 *
 * It reports to the launcher on stderr, through a close-on-exec duplicate:
 * "pid N" (its pid on the host) first, then either nothing, so the launcher
 * sees end of file exactly when execve succeeds, or "error MESSAGE".
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readlinkSync, readSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import {
  becomeUser,
  chdir,
  cloexecFrom,
  dropBoundingCapability,
  dup2,
  dupCloexec,
  execve,
  MS,
  mount,
  O,
  openFd,
  pivotRoot,
  resetSignals,
  sethostname,
  setsid,
  umountDetach,
} from "./libc.ts";
import { DEFAULT_PATH } from "../../pods/pod.ts";
import { accountOf } from "./passwd.ts";
import { resolveInRoot } from "./root-path.ts";
import { DEV_NODES, KEPT_CAPABILITIES, REPORT_ERROR, REPORT_PID, type PodInitPlan } from "./pod-init-plan.ts";
import { POD_DEV, POD_DEVPTS, POD_PROC, POD_TMP, type PodFileSystem } from "./pod-shape.ts";

/** Runs in the new namespaces; returns only when the pod could not start. */
export function podInit(argv: string[]): number {
  let report = 2;
  try {
    report = dupCloexec(2);
    writeSync(report, `${REPORT_PID}${readlinkSync("/proc/self")}\n`);
    // The launcher (unshare, our parent on the host) is killed once the agent reads our pid, which makes
    // us the agent's child. A command that ended before that would be reaped by unshare, its exit status
    // lost ("exited(?)"): so the command starts only once the launcher is gone (or after LAUNCHER_WAIT_MS).
    const launcher = launcherStat();
    const plan = JSON.parse(readFileSync(argv[0] ?? "", "utf8")) as PodInitPlan;
    buildRoot(plan);
    startCommand(plan, launcher);
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).replaceAll("\n", " ");
    try {
      writeSync(report, `${REPORT_ERROR}${message}\n`);
    } catch {
      // Nobody listens any more; the exit status still says it failed.
    }
  }
  return 127;
}

/** How long the command waits for the launcher to be gone; past it, it starts anyway (the agent may be slow or gone). */
const LAUNCHER_WAIT_MS = 5000;

/**
 * Our parent on the host, as an open /proc/PID/stat of the host's /proc (read
 * before the pod's own /proc replaces it; a pidfd cannot be had: the parent
 * is outside our pid namespace). Reading it fails once the parent is gone.
 */
function launcherStat(): number | null {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return Number.isInteger(ppid) && ppid > 1 ? openSync(`/proc/${ppid}/stat`, "r") : null;
  } catch {
    return null;
  }
}

/** Wait until the process whose stat file `fd` is has gone, at most `ms`. */
function waitGone(fd: number, ms: number): void {
  const buf = Buffer.alloc(512);
  const deadline = performance.now() + ms;
  try {
    while (performance.now() < deadline) {
      readSync(fd, buf, 0, buf.length, 0);
      Bun.sleepSync(1);
    }
  } catch {
    // ESRCH: gone
  } finally {
    closeSync(fd);
  }
}

function step<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** A mount point inside the new root, created if missing, never outside it. */
function target(root: string, podPath: string, kind: "dir" | "file"): string {
  const r = resolveInRoot(root, podPath);
  if (r.stat === null) {
    if (kind === "dir") mkdirSync(r.onHost, { recursive: true, mode: 0o755 });
    else {
      mkdirSync(dirname(r.onHost), { recursive: true, mode: 0o755 });
      writeFileSync(r.onHost, "", { mode: 0o644 });
    }
  } else if (kind === "dir" && !r.stat.isDirectory()) {
    throw new Error(`"${podPath}" is not a directory in the pod's root`);
  }
  return r.onHost;
}

function buildRoot(plan: PodInitPlan): void {
  const root = plan.root.mountpoint;
  step("set the hostname", () => sethostname(plan.hostname));
  step("make mounts private", () => mount(null, "/", null, MS.REC | MS.PRIVATE));
  if (plan.root.kind === "overlay") {
    const { lower, upper, work } = plan.root;
    step("mount the root overlay", () => mount("overlay", root, "overlay", 0, `lowerdir=${lower},upperdir=${upper},workdir=${work}`));
  } else {
    step("bind the root copy", () => mount(root, root, null, MS.BIND | MS.REC));
  }
  for (const v of plan.volumes) {
    step(`bind volume "${v.host}" at "${v.pod}"`, () => {
      const at = target(root, v.pod, v.isFile ? "file" : "dir");
      mount(v.host, at, null, MS.BIND | MS.REC);
      if (v.readonly) mount(null, at, null, MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV);
    });
  }
  step("mount /proc", () => mountFs(POD_PROC, target(root, POD_PROC.podPath, "dir")));
  const dev = target(root, POD_DEV.podPath, "dir");
  step("mount /dev", () => mountFs(POD_DEV, dev));
  for (const node of DEV_NODES) {
    step(`bind /dev/${node}`, () => {
      writeFileSync(`${dev}/${node}`, "", { mode: 0o666 });
      mount(`/dev/${node}`, `${dev}/${node}`, null, MS.BIND);
    });
  }
  step("mount /dev/pts", () => {
    mkdirSync(`${dev}/pts`, { mode: 0o755 });
    mountFs(POD_DEVPTS, `${dev}/pts`);
  });
  step("populate /dev", () => {
    mkdirSync(`${dev}/shm`, { mode: 0o1777 });
    symlinkSync("pts/ptmx", `${dev}/ptmx`);
    symlinkSync("/proc/self/fd", `${dev}/fd`);
    symlinkSync("/proc/self/fd/0", `${dev}/stdin`);
    symlinkSync("/proc/self/fd/1", `${dev}/stdout`);
    symlinkSync("/proc/self/fd/2", `${dev}/stderr`);
  });
  step("mount /tmp", () => mountFs(POD_TMP, target(root, POD_TMP.podPath, "dir")));
  step("pivot into the pod's root", () => {
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // leaves the pod with nothing of the host's tree.
    chdir(root);
    pivotRoot(".", ".");
    umountDetach(".");
    chdir("/");
  });
}

/** One of the file systems of the pod's allow-list (pod-shape.ts), exactly as listed there. */
function mountFs(fs: PodFileSystem, at: string): void {
  mount(fs.source, at, fs.fstype, fs.flags, fs.data || null);
}

function startCommand(plan: PodInitPlan, launcher: number | null): void {
  step("open the pod's log", () => {
    mkdirSync(dirname(plan.logPath), { recursive: true, mode: 0o755 });
    const log = openFd(plan.logPath, O.WRONLY | O.CREAT | O.APPEND | O.CLOEXEC, 0o640);
    const nul = openFd("/dev/null", O.RDONLY | O.CLOEXEC);
    dup2(nul, 0);
    dup2(log, 1);
    dup2(log, 2);
    closeSync(nul);
    closeSync(log);
  });
  step(`enter the working directory "${plan.workdir}"`, () => {
    if (!existsSync(plan.workdir)) mkdirSync(plan.workdir, { recursive: true, mode: 0o755 });
    chdir(plan.workdir);
  });
  step("start a session", () => setsid());
  step("drop capabilities", () => {
    const kept = new Set(Object.values(KEPT_CAPABILITIES));
    const last = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8"));
    for (let cap = 0; cap <= last; cap++) if (!kept.has(cap)) dropBoundingCapability(cap);
  });
  if (launcher !== null) waitGone(launcher, LAUNCHER_WAIT_MS);
  resetSignals();
  cloexecFrom(3);
  let env = plan.env;
  if (plan.user) {
    const { uid, gid, isHomeSet } = plan.user;
    // The pod's root is "/" now: its own /etc/passwd and /etc/group, never the host's.
    const account = accountOf(uid, gid, readOrEmpty("/etc/passwd"), readOrEmpty("/etc/group"));
    if (!isHomeSet) env = [...env.filter((e) => !e.startsWith("HOME=")), `HOME=${account.home}`];
    step(`become uid ${uid} gid ${account.gid}`, () => becomeUser(uid, account.gid, account.groups));
  }
  const path = step(`find "${plan.cmd[0]}"`, () => findCommand(plan));
  step(`exec "${path}"`, () => execve(path, plan.cmd, env));
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function findCommand(plan: PodInitPlan): string {
  const cmd = plan.cmd[0]!;
  if (cmd.includes("/")) return cmd;
  const pathVar = plan.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  for (const dir of pathVar.split(":")) {
    const p = `${dir || "."}/${cmd}`;
    if (existsSync(p)) return p;
  }
  throw new Error(`"${cmd}" is not on PATH (${pathVar})`);
}
