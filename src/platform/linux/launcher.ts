/**
 * Starts a pod, in the pod's cgroup, in a session of its own. Returns once
 * the pod's command runs (the init's close-on-exec report pipe reached end of
 * file), with the host pid of the pod's pid 1.
 *
 * With the small static init (src/native/pod-init.c, native-pod-init.ts) it
 * is one exec: the init enters (or makes, `newNetns`) the pod's net
 * namespace, makes the others, forks pid 1, puts it in its cgroups and exits,
 * never waiting for it, so pid 1 passes to the agent (a child subreaper) with
 * its exit status, exactly as after a CRIU restore, and one reaper serves
 * both. It also configures the pod's side of the network when told
 * (`network`): no `ip` spawn at all.
 *
 * Without it (a build without a C compiler): `nsenter --net=<pod netns> --
 * unshare --pid --mount --uts --ipc --fork -- autopod __pod-init PLAN`; as
 * soon as pod-init says its pid, the waiting `unshare` is killed.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { memoryHierarchy, siblingDirs } from "./cgroup.ts";
import { joinCgroupsArgv } from "./cgroup-exec.ts";
import { which } from "./exec.ts";
import { reapIfExited } from "./libc.ts";
import { nativePodInit } from "./native-pod-init.ts";
import { netnsPath } from "./netns.ts";
import { failpoint } from "../../debug/failpoints.ts";
import { REPORT_ERROR, REPORT_PID, type PodInitPlan } from "./pod-init-plan.ts";
import { KEPT_CAPABILITIES, DEV_NODES } from "./pod-init-plan.ts";
import { POD_DEV, POD_PROC, POD_TMP } from "./pod-shape.ts";
import { readProcStat } from "./proc.ts";
import { resolveInRoot } from "./root-path.ts";

export interface LaunchRequest {
  plan: PodInitPlan;
  /** Where the plan is written for pod-init to read. */
  planPath: string;
  netns: string;
  /** The pod's cgroup directory, joined before anything runs; null for none. */
  cgroup: string | null;
  timeoutMs?: number;
  /** The pod's side of its network, for the init to configure (only with the small init: see podInitConfiguresNetwork). */
  network?: { address: string; gateway: string };
  /** The init makes the net namespace (named `netns`) and the veth pair to the bridge too: no `ip` spawn at all (small init only). */
  newNetns?: { hostVeth: string; bridge: string };
}

/** Whether launchPod can configure the pod's side of the network (lo, eth0, default route) itself. */
export function podInitConfiguresNetwork(): boolean {
  return nativePodInit() !== null;
}

export interface Launched {
  /** Host pid of the pod's pid 1. */
  pid: number;
  /** Its start time (/proc/PID/stat field 22): pid + start time name it for good. */
  startTime: number;
  /** Milliseconds from the spawn until pid 1 reported its pid, and until its command ran (for the "pod started" log line). */
  ms: { launch_pid: number; launch_exec: number };
}

export class LaunchError extends Error {
  override name = "LaunchError";
}

/** How to run autopod again: the compiled binary, or Bun with src/main.ts. */
export function selfArgv(): string[] {
  return Bun.main.startsWith("/$bunfs") ? [process.execPath] : [process.execPath, resolve(import.meta.dir, "../../main.ts")];
}

/** The small init's argv for `plan` (its environment is the pod's: see nativeLaunch). */
export function nativeInitArgv(init: string, req: LaunchRequest): string[] {
  const { plan } = req;
  // Paths in the pod's root come resolved (symlinks of the base followed inside it); the init follows none.
  const base = plan.root.kind === "overlay" ? plan.root.lower : plan.root.mountpoint;
  const inRoot = (p: string) => resolveInRoot(base, p).inRoot;
  const argv = [init];
  for (const dir of initCgroups(req)) argv.push("--cgroup", dir);
  if (req.newNetns) argv.push("--new-netns", netnsPath(req.netns), req.newNetns.hostVeth, req.newNetns.bridge);
  else argv.push("--netns", netnsPath(req.netns));
  if (req.network) argv.push("--net", req.network.address, req.network.gateway);
  argv.push("--hostname", plan.hostname);
  if (plan.root.kind === "overlay") argv.push("--overlay", plan.root.mountpoint, plan.root.lower, plan.root.upper, plan.root.work);
  else argv.push("--copy", plan.root.mountpoint);
  for (const v of plan.volumes) argv.push("--volume", v.host, v.pod, v.readonly ? "ro" : "rw", v.isFile ? "file" : "dir");
  argv.push("--proc", inRoot(POD_PROC.podPath), "--dev", inRoot(POD_DEV.podPath), "--tmp", inRoot(POD_TMP.podPath));
  for (const n of DEV_NODES) argv.push("--dev-node", n);
  argv.push("--keep-caps", Object.values(KEPT_CAPABILITIES).join(","), "--workdir", plan.workdir, "--log", plan.logPath);
  if (plan.user) argv.push("--user", String(plan.user.uid), plan.user.gid === null ? "-" : String(plan.user.gid), plan.user.isHomeSet ? "1" : "0");
  argv.push("--", ...plan.cmd);
  return argv;
}

/**
 * The cgroups the small init puts the pod's pid 1 in. On v1 hosts, all the pod's (memory, cpu, pids: other
 * hierarchies): a v1 join waits for an RCU grace period, which pid 1 overlaps with building its network and
 * root (its command runs only after). On v2, where Bun's spawn starts the init in the pod's cgroup (clone3
 * CLONE_INTO_CGROUP, no migration), the others only (none).
 */
function initCgroups(req: LaunchRequest): string[] {
  if (!req.cgroup) return [];
  const siblings = siblingDirs(req.cgroup);
  return memoryHierarchy()?.version === 1 ? [req.cgroup, ...siblings] : siblings;
}

/** The pod's environment, as the init passes it to the command: its own. */
function envObject(entries: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const eq = e.indexOf("=");
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return env;
}

export async function launchPod(req: LaunchRequest): Promise<Launched> {
  const init = nativePodInit();
  if (init) {
    const isJoinedByInit = req.cgroup !== null && initCgroups(req).includes(req.cgroup);
    const started = performance.now();
    const spawned = Bun.spawn(nativeInitArgv(init, req), spawnOptions(isJoinedByInit ? { ...req, cgroup: null } : req, envObject(req.plan.env)));
    return await watchLaunch(req, started, spawned, false);
  }
  if (req.network || req.newNetns) throw new LaunchError("The pod's network can be configured by the small init only");
  writeFileSync(req.planPath, JSON.stringify(req.plan), { mode: 0o600 });
  // On v1 hosts the pod's cpu and pids cgroups are other hierarchies than its memory one (Bun's spawn joins that).
  const argv = joinCgroupsArgv(req.cgroup ? siblingDirs(req.cgroup) : [], [
    which("nsenter") ?? "nsenter",
    `--net=${netnsPath(req.netns)}`,
    "--",
    which("unshare") ?? "unshare",
    "--pid",
    "--mount",
    "--uts",
    "--ipc",
    "--fork",
    "--propagation",
    "private",
    "--",
    ...selfArgv(),
    "__pod-init",
    req.planPath,
  ]);
  return await watchLaunch(req, performance.now(), Bun.spawn(argv, spawnOptions(req, {})), true);
}

function spawnOptions(req: LaunchRequest, env: Record<string, string>) {
  return {
    stdio: ["ignore", "ignore", "pipe"] as ["ignore", "ignore", "pipe"],
    env,
    detached: true,
    ...(req.cgroup ? { cgroup: req.cgroup } : {}),
  };
}

/** Read the init's report until end of file; `killLauncher`: unshare waits for the init, so it is killed once the pid is known. */
async function watchLaunch(
  req: LaunchRequest,
  started: number,
  launcher: Bun.Subprocess<"ignore", "ignore", "pipe">,
  killLauncher: boolean,
): Promise<Launched> {
  let pid: number | null = null;
  let startTime = 0;
  let pidAt = started;
  let podError: string | null = null;
  const other: string[] = [];
  const onLine = (line: string) => {
    if (line.startsWith(REPORT_PID) && pid === null) {
      pid = Number(line.slice(REPORT_PID.length));
      startTime = readProcStat(pid)?.startTime ?? 0;
      pidAt = performance.now();
      // The launcher has done its part; its death hands pid 1 to us (pod-init waits for it before the command runs).
      // The small init's launcher exits by itself, never waiting for pid 1.
      void Promise.resolve(failpoint("pods.pid-reported")).then(() => {
        if (killLauncher) launcher.kill("SIGKILL");
      });
    } else if (line.startsWith(REPORT_ERROR)) {
      podError = line.slice(REPORT_ERROR.length);
    } else if (line.trim()) {
      other.push(line.trim());
    }
  };

  let execAt = started;
  const timeoutMs = req.timeoutMs ?? 15_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    launcher.kill("SIGKILL");
    if (pid !== null) process.kill(pid, "SIGKILL");
  }, timeoutMs);
  try {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of launcher.stderr as ReadableStream<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
    if (buffered) onLine(buffered);
    execAt = performance.now();
  } finally {
    clearTimeout(timer);
  }
  const launcherStatus = await launcher.exited;

  const round = (ms: number) => Math.round(ms * 10) / 10;
  if (pid !== null && podError === null && !timedOut) return { pid, startTime, ms: { launch_pid: round(pidAt - started), launch_exec: round(execAt - pidAt) } };
  if (pid !== null) await reapSoon(pid);
  if (timedOut) throw new LaunchError(`The pod did not start within ${timeoutMs / 1000} s`);
  if (podError !== null) throw new LaunchError(podError);
  throw new LaunchError(other.join("; ") || `the launcher exited with status ${launcherStatus}`);
}

/** Collect a failed pod-init so it does not linger as a zombie. */
async function reapSoon(pid: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = reapIfExited(pid);
    if (r !== null) return;
    await Bun.sleep(10);
  }
}
