/**
 * `exec` in a running pod: `nsenter` into all its namespaces, root and
 * working directory, in its cgroup. With a terminal, `setsid --ctty` first
 * makes the slave of a pty from the pod's own devpts the controlling
 * terminal of a new session, which the command inherits through nsenter's
 * fork; the agent keeps the master and pumps it.
 *
 * The session leader is nsenter itself, outside the pod's pid namespace: a
 * shell puts its jobs in process groups of their own and makes them the
 * terminal's foreground, so Ctrl-C reaches only them; a command run without
 * a shell shares nsenter's group, and Ctrl-C ends both (status 130), as in
 * `podman exec -it`. Such a session cannot be checkpointed (nor can any
 * exec): checkpoint refuses it, or kills it with --kill-exec.
 */
import { closeSync, writeSync } from "node:fs";
import type { ExecOptions, PodProcess, TerminalSize } from "../pod-host.ts";
import { siblingDirs } from "./cgroup.ts";
import { joinCgroupsArgv } from "./cgroup-exec.ts";
import { which } from "./exec.ts";
import { killTree } from "./pod-procs.ts";
import { openPodPty } from "./pod-pty.ts";
import { setTerminalSize } from "./terminal.ts";

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

/** After the command ends, how long output still in the terminal may take to be read. */
const PTY_DRAIN_MS = 300;

export interface PodExecRequest extends ExecOptions {
  pid: number;
  cmd: string[];
  env: Record<string, string>;
  cgroup: string | null;
}

/** nsenter into the pod, from inside its cgroups (Bun's spawn joins the memory one; v1's cpu and pids ones are joined here). */
function nsenterArgv(o: PodExecRequest): string[] {
  const argv = [which("nsenter") ?? "nsenter", "-t", String(o.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", ...o.cmd];
  return joinCgroupsArgv(o.cgroup ? siblingDirs(o.cgroup) : [], argv);
}

export function execInPod(o: PodExecRequest): PodProcess {
  return o.tty ? execWithTerminal(o, o.tty) : execWithPipes(o);
}

function statusOf(proc: { exited: Promise<number>; signalCode: string | number | null | undefined }): Promise<number> {
  return proc.exited.then((code) => (proc.signalCode ? 128 + (SIGNALS[String(proc.signalCode)] ?? 0) : code));
}

function execWithPipes(o: PodExecRequest): PodProcess {
  const proc = Bun.spawn(nsenterArgv(o), {
    stdio: [o.hasStdin ? "pipe" : "ignore", "pipe", "pipe"],
    env: o.env,
    ...(o.cgroup ? { cgroup: o.cgroup } : {}),
  });
  const sink = o.hasStdin ? (proc.stdin as import("bun").FileSink) : null;
  let isInputOpen = sink !== null;
  return {
    stdout: proc.stdout,
    stderr: proc.stderr,
    exited: statusOf(proc),
    // nsenter forks the command into the pod: killing nsenter alone would leave it running there.
    kill: () => killTree(proc.pid),
    async write(data) {
      if (!isInputOpen) return;
      try {
        sink!.write(data);
        await sink!.flush();
      } catch {
        isInputOpen = false; // the command closed its stdin or ended: the rest of the input has nowhere to go
      }
    },
    endInput() {
      if (!isInputOpen) return;
      isInputOpen = false;
      try {
        sink!.end();
      } catch {
        // ended already
      }
    },
    resize() {},
  };
}

function execWithTerminal(o: PodExecRequest, size: TerminalSize): PodProcess {
  const pty = openPodPty(o.pid, size);
  let proc;
  try {
    proc = Bun.spawn([which("setsid") ?? "setsid", "--ctty", "--wait", ...nsenterArgv(o)], {
      stdio: [pty.slave, pty.slave, pty.slave],
      env: o.env,
      ...(o.cgroup ? { cgroup: o.cgroup } : {}),
    });
  } catch (e) {
    closeSync(pty.master);
    throw e;
  } finally {
    closeSync(pty.slave);
  }
  const exited = statusOf(proc);
  let isMasterOpen = true;
  const closeMaster = () => {
    if (!isMasterOpen) return;
    isMasterOpen = false;
    closeSync(pty.master);
  };
  return {
    stdout: terminalOutput(pty.master, exited, closeMaster),
    stderr: new ReadableStream({ start: (c) => c.close() }),
    exited,
    kill: () => {
      killTree(proc.pid);
    },
    async write(data) {
      let off = 0;
      while (off < data.byteLength && isMasterOpen) {
        try {
          off += writeSync(pty.master, data, off);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== "EAGAIN") return; // EIO: nothing holds the terminal any more
          await Bun.sleep(5); // the command is not reading: wait, as a terminal would
        }
      }
    },
    endInput() {},
    resize(s) {
      if (isMasterOpen) setTerminalSize(pty.master, s);
    },
  };
}

/**
 * What the terminal shows, until every holder of the slave has closed it
 * (the master reads EIO), or the command has ended and a short drain found
 * nothing more (a background job may keep the terminal open). Closes the
 * master at the end.
 */
function terminalOutput(master: number, exited: Promise<number>, closeMaster: () => void): ReadableStream<Uint8Array> {
  const reader = Bun.file(master).stream().getReader();
  let isEnded = false;
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  void exited.then(() => {
    drainTimer = setTimeout(() => {
      isEnded = true;
      void reader.cancel().catch(() => {});
    }, PTY_DRAIN_MS);
  });
  const finish = () => {
    clearTimeout(drainTimer);
    closeMaster();
  };
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        const { value, done } = await reader.read();
        if (done || isEnded) {
          if (value?.byteLength) ctrl.enqueue(value);
          finish();
          ctrl.close();
          return;
        }
        ctrl.enqueue(value);
      } catch {
        // EIO: the last holder of the slave closed it
        finish();
        ctrl.close();
      }
    },
    cancel() {
      void reader.cancel().catch(() => {});
      finish();
    },
  });
}
