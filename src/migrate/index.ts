/**
 * Live migration: a running pod moves to a peer with its memory, files,
 * address and TCP connections, frozen only for the last round, and at every
 * failure it ends up running on exactly one host.
 *
 * The state machine (S = source agent, D = destination agent; journal phase
 * in brackets, written before the step it names; the source's journal is the
 * decision record):
 *
 *   S  pre-flight          D's info and pods: CRIU, CPU, memory, disk, name, address.
 *                          Refused: nothing moved, nothing journaled.
 *   S  [precopy]           rounds: `criu dump --leave-running` (a --leave-running
 *                          checkpoint) and push of the chunks D lacks, while the
 *                          stop rule (stop-rule.ts) says another round pays.
 *   S  [frozen]            final dump: network locked, tasks left stopped
 *                          (--leave-stopped); image committed here; pushed to D.
 *   D  [restoring]         restore with tasks stopped and network locked
 *                          (`criu restore` held, as a restore holds them until
 *                          its pages are verified), then [ready], then answer.
 *   S  [committed]         the decision: S's copy is killed (never continued).
 *   S -> D resume          D continues its copy, unlocks; D's journal goes;
 *                          then S's journal goes.
 *
 * Failures:
 * - Any failure before [committed] (pre-flight, a round, the dump, the delta,
 *   D's restore, D unreachable, D's answer lost): S removes its journal, then
 *   continues its own stopped copy and unlocks it, announces the address
 *   again, and tells D to drop its copy (best effort).
 * - D holds a ready copy and hears nothing within ASK_AFTER_MS: it asks S for
 *   the outcome (GET /v1/migrations/ID) every ASK_EVERY_MS. "committed" (S's
 *   journal says so) -> resume; "aborted" (no journal, or one S no longer
 *   drives) -> drop; "pending" or no answer -> keep the copy held and ask again.
 *   D never runs its copy on its own.
 * - S cannot tell D to resume after committing: it keeps its [committed]
 *   journal and keeps telling D until D answers (or D learns it by asking).
 * - An agent killed mid-migration recovers on start (recovery.ts): S [precopy]
 *   or [frozen] -> aborted, its copy continues; S [committed] -> finished (its
 *   copy killed, D told to resume); D [restoring] -> its copy (never run) and
 *   the pod made for it go; D [ready] -> held again, S asked.
 *
 * Failpoints: migrate.round, migrate.freezing, migrate.frozen,
 * migrate.delta-sent, migrate.ready, migrate.committed, migrate.resuming (S);
 * migrate.dest-prepared, migrate.dest-ready, migrate.dest-resuming (D).
 */
import type { CheckpointContext } from "../checkpoint/checkpointer.ts";
import type { ImageTrust } from "../trust/image-trust.ts";
import { MigrationDestination } from "./destination.ts";
import type { MigrationOutcome, PeerMigrationClients } from "./peer.ts";
import { type RecoveryPlan, recoverMigrationsAfter, recoverMigrationsBefore } from "./recovery.ts";
import { type MigrateReport, type MigrateRequest, type MigrationProgress, migratePod, outcomeOf, type SourceDeps } from "./source.ts";

export type { MigrationOutcome, PeerMigrationClient, PeerMigrationClients, HeldRestore } from "./peer.ts";
export type { MigrateReport, MigrateRequest, MigrationMode, MigrationProgress, RoundReport } from "./source.ts";
export { MigrationDestination } from "./destination.ts";

export interface MigrationsOptions {
  ctx: CheckpointContext;
  trust: ImageTrust;
  peers: PeerMigrationClients;
  hostName(): string;
  /** A migrated pod runs here now, from host `source`. */
  onArrived?(pod: string, source: string): void;
}

/** Both sides of live migration for one agent: what the local and peer APIs call. */
export class Migrations {
  readonly destination: MigrationDestination;
  readonly #source: SourceDeps;
  #plan: RecoveryPlan | null = null;

  constructor(readonly o: MigrationsOptions) {
    this.#source = { ctx: o.ctx, trust: o.trust, peers: o.peers, hostName: o.hostName, active: new Set() };
    this.destination = new MigrationDestination({ ctx: o.ctx, peers: o.peers, ...(o.onArrived ? { onArrived: o.onArrived } : {}) });
  }

  migrate(name: string, req: MigrateRequest, onProgress?: (p: MigrationProgress) => void): Promise<MigrateReport> {
    return migratePod(this.#source, name, req, onProgress);
  }

  /** What became of migration `id`, for a destination that asks. */
  outcome(id: string): MigrationOutcome {
    return outcomeOf(this.o.ctx.stateDir, this.#source.active, id);
  }

  /** Before the checkpoint and pod recovery: returns the pods they must leave alone. */
  async recoverBefore(): Promise<ReadonlySet<string>> {
    this.#plan = await recoverMigrationsBefore(this.o.ctx);
    return this.#plan.skip;
  }

  /** After them, once peers can be asked. */
  async recoverAfter(): Promise<void> {
    if (!this.#plan) return;
    await recoverMigrationsAfter(this.#plan, { ctx: this.o.ctx, source: this.#source, destination: this.destination, peers: this.o.peers });
    this.#plan = null;
  }

  stop(): void {
    this.destination.stop();
  }
}
