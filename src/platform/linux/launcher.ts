/**
 * Starts a pod: `nsenter --net=<pod netns> -- unshare --pid --mount --uts
 * --ipc --fork -- autopod __pod-init PLAN`, in the pod's cgroup, in a session
 * of its own. Returns once the pod's command runs (pod-init's close-on-exec
 * report pipe reached end of file), with the host pid of the pod's pid 1.
 *
 * As soon as pod-init says its pid, the waiting `unshare` is killed: the pod's
 * pid 1 is then a child of the agent (a child subreaper), exactly as after a
 * CRIU restore, so one reaper serves both.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { siblingDirs } from "./cgroup.ts";
import { joinCgroupsArgv } from "./cgroup-exec.ts";
import { which } from "./exec.ts";
import { reapIfExited } from "./libc.ts";
import { netnsPath } from "./netns.ts";
import { failpoint } from "../../debug/failpoints.ts";
import { REPORT_ERROR, REPORT_PID, type PodInitPlan } from "./pod-init-plan.ts";
import { readProcStat } from "./proc.ts";

export interface LaunchRequest {
  plan: PodInitPlan;
  /** Where the plan is written for pod-init to read. */
  planPath: string;
  netns: string;
  /** The pod's cgroup directory, joined before anything runs; null for none. */
  cgroup: string | null;
  timeoutMs?: number;
}

export interface Launched {
  /** Host pid of the pod's pid 1. */
  pid: number;
  /** Its start time (/proc/PID/stat field 22): pid + start time name it for good. */
  startTime: number;
}

export class LaunchError extends Error {
  override name = "LaunchError";
}

/** How to run autopod again: the compiled binary, or Bun with src/main.ts. */
export function selfArgv(): string[] {
  return Bun.main.startsWith("/$bunfs") ? [process.execPath] : [process.execPath, resolve(import.meta.dir, "../../main.ts")];
}

export async function launchPod(req: LaunchRequest): Promise<Launched> {
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
  const launcher = Bun.spawn(argv, {
    stdio: ["ignore", "ignore", "pipe"],
    env: {},
    detached: true,
    ...(req.cgroup ? { cgroup: req.cgroup } : {}),
  });

  let pid: number | null = null;
  let startTime = 0;
  let podError: string | null = null;
  const other: string[] = [];
  const onLine = (line: string) => {
    if (line.startsWith(REPORT_PID) && pid === null) {
      pid = Number(line.slice(REPORT_PID.length));
      startTime = readProcStat(pid)?.startTime ?? 0;
      // The launcher has done its part; its death hands pid 1 to us (pod-init waits for it before the command runs).
      void Promise.resolve(failpoint("pods.pid-reported")).then(() => launcher.kill("SIGKILL"));
    } else if (line.startsWith(REPORT_ERROR)) {
      podError = line.slice(REPORT_ERROR.length);
    } else if (line.trim()) {
      other.push(line.trim());
    }
  };

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
  } finally {
    clearTimeout(timer);
  }
  const launcherStatus = await launcher.exited;

  if (pid !== null && podError === null && !timedOut) return { pid, startTime };
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
