/**
 * A restarted agent finishes or undoes the migrations it was in, from their
 * journals (journal.ts), in two steps around the checkpoint and pod recovery:
 *
 * before (decides what the checkpoint and pod recovery may touch):
 * - source, precopy: nothing to undo (a round's own journal is a
 *   --leave-running checkpoint's); the migration is aborted.
 * - source, frozen or postcopy: not committed, so aborted: the stopped copy continues and
 *   its network is unlocked (the final checkpoint's journal is taken over).
 * - source, committed: the final checkpoint's recovery kills the stopped copy.
 * - destination, restoring: the restore's recovery kills a copy that never ran.
 * - destination, ready: the held copy is kept out of both recoveries.
 * - destination, postcopy: the running copy's network is locked at once (its pages may be missing).
 * after:
 * - source, frozen: the address announced from here again; the peer told to drop its copy.
 * - source, committed: the pod's record goes here; the peer is told (until it answers) to run its copy.
 * - destination, restoring: the pod made for the restore goes.
 * - destination, ready: held again; the source is asked, and the copy runs or goes only on its answer.
 * - destination, postcopy: kept cut off; the source is asked: committed -> unlocked, the pod is ours; aborted -> killed.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type CheckpointContext, unlockAll } from "../checkpoint/checkpointer.ts";
import { JOURNAL_DIR, type Journal, removeJournal } from "../checkpoint/journal.ts";
import { errorMessage } from "../errors.ts";
import { childPath } from "../pods/child-path.ts";
import { dropHeldCopy, type MigrationDestination } from "./destination.ts";
import { listMigrationJournals, MIGRATION_DIR, type MigrationJournal, removeMigrationJournal } from "./journal.ts";
import type { PeerMigrationClients } from "./peer.ts";
import { retryResume, type SourceDeps } from "./source.ts";

export interface RecoveryPlan {
  /** Pods the pod runtime's recovery must leave alone (held copies). */
  skip: Set<string>;
  journals: MigrationJournal[];
}

/** Step one, before the checkpoint and pod recovery. */
export async function recoverMigrationsBefore(ctx: CheckpointContext): Promise<RecoveryPlan> {
  const plan: RecoveryPlan = { skip: new Set(), journals: listMigrationJournals(ctx.stateDir) };
  removeStages(ctx.stateDir);
  for (const j of plan.journals) {
    try {
      if (j.role === "source" && (j.phase === "frozen" || j.phase === "postcopy")) await undoFrozen(ctx, j.pod, j.pid);
      // Its pages may be missing (the lazy-pages daemon went with the agent): cut off at once, kept only on the source's word.
      if (j.role === "destination" && j.phase === "postcopy") await ctx.host.lockNetwork(ctx.pods.target0(j.pod).netnsPath);
      if (j.role === "destination" && j.phase === "ready") {
        removeJournal(ctx.stateDir, j.pod);
        plan.skip.add(j.pod);
      }
    } catch (e) {
      ctx.log.error("could not recover an interrupted migration", { pod: j.pod, id: j.id, role: j.role, phase: j.phase, error: errorMessage(e) });
    }
  }
  return plan;
}

/** Step two, once the agent's pods are recovered and its peers can be asked. */
export async function recoverMigrationsAfter(
  plan: RecoveryPlan,
  d: { ctx: CheckpointContext; source: SourceDeps; destination: MigrationDestination; peers: PeerMigrationClients },
): Promise<void> {
  const { ctx } = d;
  for (const j of plan.journals) {
    try {
      if (j.role === "source") {
        if (j.phase === "committed") {
          const rec = ctx.pods.list().find((p) => p.name === j.pod);
          if (rec && rec.phase === "checkpointed") await ctx.pods.remove(j.pod, true);
          retryResume(d.source, d.peers.client(j.peer), j.id, j.secret, j.pod);
          ctx.log.info("finishing a committed migration: the peer is told to run the pod", { pod: j.pod, id: j.id, to: j.peer });
          continue;
        }
        removeMigrationJournal(ctx.stateDir, j.id);
        if (j.phase === "frozen" || j.phase === "postcopy") {
          await ctx.pods.announce(j.pod).catch(() => undefined);
          void d.peers
            .client(j.peer)
            .migrationAbort(j.id, j.secret)
            .catch(() => undefined);
        }
        ctx.log.info("aborted a migration the agent was killed in: the pod runs on here", { pod: j.pod, id: j.id, phase: j.phase });
        continue;
      }
      if (j.phase === "restoring") {
        removeMigrationJournal(ctx.stateDir, j.id);
        await dropHeldCopy(ctx, j.pod, null);
        ctx.log.info("undid a migration's restore the agent was killed in", { pod: j.pod, id: j.id });
        continue;
      }
      if (j.phase === "postcopy") {
        if (j.pid !== null && ctx.host.isAlive(j.pid)) {
          await d.destination.adoptPulling(j.id, j.pod, j.peer, j.pid, j.secret);
          ctx.log.info("a post-copy copy is cut off until its source says what became of the migration", { pod: j.pod, id: j.id, from: j.peer });
        } else {
          removeMigrationJournal(ctx.stateDir, j.id);
          await dropHeldCopy(ctx, j.pod, null);
        }
        continue;
      }
      if (j.pid !== null && ctx.host.isAlive(j.pid)) {
        d.destination.adopt(j.id, j.pod, j.peer, j.pid, j.secret);
        ctx.log.info("holding a migrating pod again; asking its source what became of it", { pod: j.pod, id: j.id, from: j.peer });
      } else {
        removeMigrationJournal(ctx.stateDir, j.id);
        await dropHeldCopy(ctx, j.pod, null);
        ctx.log.warn("a held migrating pod was gone after the restart; the source keeps or resumes its own copy", { pod: j.pod, id: j.id });
      }
    } catch (e) {
      ctx.log.error("could not finish recovering an interrupted migration", { pod: j.pod, id: j.id, error: errorMessage(e) });
    }
  }
}

/** Staged round files (destination.ts) of the last agent's life: no restore will take them now. */
function removeStages(stateDir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(join(stateDir, MIGRATION_DIR));
  } catch {
    return;
  }
  for (const n of names) if (/\.stage-\d+$/.test(n)) rmSync(join(stateDir, MIGRATION_DIR, n), { recursive: true, force: true });
}

/** The source's final dump (or what came after it) was interrupted before the commit: its stopped copy runs on. */
async function undoFrozen(ctx: CheckpointContext, pod: string, pid: number | null): Promise<void> {
  const path = childPath(ctx.stateDir, JOURNAL_DIR, `${pod}.json`);
  if (existsSync(path)) {
    const cj = JSON.parse(readFileSync(path, "utf8")) as Journal;
    if (cj.criuPid !== null) await ctx.host.killCriu(cj.criuPid);
    rmSync(cj.tmp, { recursive: true, force: true });
    removeJournal(ctx.stateDir, pod);
  }
  const rec = ctx.pods.list().find((p) => p.name === pod);
  if (!rec) return;
  if (pid !== null && ctx.host.isAlive(pid)) {
    const connections = ctx.host.continueTree(pid);
    await unlockAll(ctx.host, ctx.pods.target0(pod).netnsPath);
    ctx.host.nudgePeers(ctx.pods.target0(pod).netnsPath, connections);
  }
  if (rec.phase === "checkpointing") ctx.pods.endCheckpoint(pod, "running");
}
