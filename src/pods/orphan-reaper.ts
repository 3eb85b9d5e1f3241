/**
 * Reaps the agent's children that are not pods. The agent is a child
 * subreaper (so a pod's pid 1 is its child after a launch or a CRIU
 * restore), and so it also adopts every orphan of its children: the tasks a
 * failed CRIU restore forked and left behind (fuzz finding P2: one zombie per
 * failed restore, 52 after a 35-minute run). Pods are reaped by the runtime's
 * poll, which records their exit status; this takes only what no one else
 * will reap:
 *
 * - a zombie child seen in two sweeps in a row: Bun reaps the processes it
 *   spawned as soon as its event loop turns, and a sweep is a timer, so
 *   between two sweeps Bun had its turn (Bun delivers no SIGCHLD to JS);
 * - whose pid is no pod's;
 * - while no pod is being created, checkpointed, restored or removed (a pid 1
 *   not yet recorded must keep its exit status for the runtime).
 */
import type { PodHost } from "../platform/pod-host.ts";

export interface OrphanSource {
  /** Pids the runtime reaps itself, or null while a pod is between states (then nothing is reaped). */
  claimedPids(): ReadonlySet<number> | null;
}

export class OrphanReaper {
  /** Zombies of the previous sweep. */
  #seen = new Set<number>();
  /** How many were reaped, for the status and tests. */
  reaped = 0;

  constructor(
    private readonly host: Pick<PodHost, "zombieChildren" | "reap">,
    private readonly pods: OrphanSource,
  ) {}

  /** One sweep: reap the orphans seen as zombies last time too; returns their pids. */
  sweep(): number[] {
    const claimed = this.pods.claimedPids();
    const zombies = new Set(this.host.zombieChildren());
    const out: number[] = [];
    if (claimed !== null) {
      for (const pid of zombies) {
        if (!this.#seen.has(pid) || claimed.has(pid)) continue;
        const r = this.host.reap(pid);
        if (r !== null && r !== "not-child") out.push(pid);
      }
    }
    for (const pid of out) zombies.delete(pid);
    this.#seen = zombies;
    this.reaped += out.length;
    return out;
  }
}
