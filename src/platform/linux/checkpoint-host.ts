/** The Linux CheckpointHost: CRIU, nftables network locks, and the pod's processes through /proc and signals. */
import { readFileSync, statfsSync } from "node:fs";
import type { CheckpointHost } from "../checkpoint-host.ts";
import { cpuFlags } from "./cpu.ts";
import { criuVersion } from "./criu.ts";
import { findCriu } from "./criu-choose.ts";
import { criuDumpLazy, criuLazyPages } from "./criu-lazy.ts";
import { criuDump, criuRestore, removeNetworkLock } from "./criu-runner.ts";
import { which } from "./exec.ts";
import { lockNetwork, unlockNetwork, whyNoNftables } from "./netlock.ts";
import { continuePod, killPod, killTree, podPids, processesOutsideTree, waitGone } from "./pod-procs.ts";
import { nudgePeers } from "./tcp-nudge.ts";
import { leaveTcpRepair } from "./tcp-repair.ts";
import { undumpableResources } from "./undumpable.ts";

function isProcessAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** How long a restarted agent lets a CRIU its predecessor started finish before it kills it. */
const CRIU_FINISH_MS = 60_000;

/**
 * Let a CRIU the last agent started finish, and kill it only past CRIU_FINISH_MS:
 * killed mid-dump, with its parasite in the pod's tasks, they die of SIGTRAP.
 * A finished dump leaves them stopped, a failed one running: recovery handles both.
 */
async function killCriu(pid: number): Promise<void> {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (!cmd.split("\0")[0]?.endsWith("criu")) return;
    if (await waitGone(pid, CRIU_FINISH_MS)) return;
    process.kill(pid, "SIGKILL");
    await waitGone(pid, 5000);
  } catch {
    // gone
  }
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

export const linuxCheckpointHost: CheckpointHost = {
  findCriu: (configured) => findCriu(configured),
  criuVersion: (path) => criuVersion(path),
  kernelRelease: () => readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
  cpuFlags: () => cpuFlags(),
  // CRIU runs them with execvp, on the PATH it inherits from the agent.
  findProgram: (name) => which(name, []),
  whyNoNftables,
  freeBytes,

  dump: (o) => criuDump(o),
  restore: (o) => criuRestore(o),
  dumpLazy: (o) => criuDumpLazy(o),
  lazyPages: (o) => criuLazyPages(o),

  lockNetwork,
  unlockNetwork,
  removeCriuLock: removeNetworkLock,

  continueTree: (pid) => {
    // After a --leave-stopped dump the pod's TCP connections are still in repair mode.
    // One walk of /proc for both (every process of the host is looked at).
    const pids = podPids(pid);
    const connections = leaveTcpRepair(pids);
    continuePod(pid, pids);
    return connections;
  },
  nudgePeers: (netnsPath, connections) => {
    try {
      nudgePeers(netnsPath, connections);
    } catch {
      // only a delay: the peers retransmit when their timers fire
    }
  },
  killTree: killPod,
  execSessions: processesOutsideTree,
  undumpableResources,
  killSession: killTree,
  waitGone,
  isAlive: isProcessAlive,
  killCriu,
};
