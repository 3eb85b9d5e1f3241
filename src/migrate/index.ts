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
 *                          stop rule (stop-rule.ts) says another round pays, or
 *                          with --max-downtime until the predicted freeze fits
 *                          (refused after --max-rounds: nothing frozen).
 *   D  (stage)             after each round, D makes that round's CRIU files in
 *                          the background, patching the round before's (no journal:
 *                          a stage is only a cache, dropped by the restore, an abort,
 *                          after STAGE_TTL_MS, or at an agent's start); with round 1
 *                          also the pod's base (bases/, kept: a cache by content).
 *   S  (wait for stage)    before freezing, S asks D until the last round's stage
 *                          is made (GET .../stage); a long wait: one more round.
 *                          D not answering or its stage failing: S freezes anyway
 *                          (D's restore writes the files whole).
 *   S  [frozen]            final dump (the base, read-only, captured just before): network locked, tasks left stopped
 *                          (--leave-stopped); image committed here; pushed to D.
 *   D  (confirm)           D asks the source the request names (its server
 *                          certificate must name it) whether it drives this
 *                          migration, of this pod, to D; else refused, nothing made.
 *   D  [restoring]         restore with tasks stopped and network locked (the
 *                          last round's staged files patched with the delta)
 *                          (`criu restore` held, as a restore holds them until
 *                          its pages are verified), then [ready], then answer.
 *   S  [committed]         the decision: S's copy is killed (never continued).
 *   S -> D resume          D continues its copy, unlocks; D's journal goes;
 *                          then S's journal goes. Resume and abort carry the
 *                          secret S sent with the restore (both journals keep it).
 *
 * Failures:
 * - Any failure before [committed] (pre-flight, a round, the dump, the delta,
 *   D's restore, D unreachable, D's answer lost, D's disk full, a chunk that
 *   fails D's check): S removes its journal, then
 *   continues its own stopped copy and unlocks it, announces the address
 *   again, and tells D to drop its copy (best effort).
 * - A link cut while S is frozen does not keep it frozen for a request's own
 *   timeout: from the final push to D's answer S asks D's health every
 *   PROBE_EVERY_MS and gives up (aborts, as above) after PROBES_MISSED missed
 *   in a row; a push whose connection takes no bytes for PUSH_STALL_MS is given
 *   up (rounds too). A cut of a few seconds only slows the transfer.
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
 * Post-copy (--mode postcopy; postcopy-source.ts, destination.ts): the freeze
 * does not read the pod's memory, so it does not grow with it.
 *
 *   S  pre-flight          as above; no memory rounds (--mode auto may have run some).
 *   S  (base ahead)        with no round: the pod's base, an image of its own, pushed while the
 *                          pod runs, and D asked to stage it (its copy of the base, made before
 *                          the freeze); a failed push refuses (nothing frozen), a failed stage
 *                          only leaves the copy to D's restore. Removed at the end, as rounds are.
 *   S  [frozen]            `criu dump --lazy-pages --leave-stopped`: the images without
 *                          the memory; CRIU then serves the pages through a unix socket
 *                          S holds (--ps-socket; never a TCP port of CRIU's own), the
 *                          tasks stopped, network locked. Image committed, pushed to D.
 *   S  [postcopy]          written before D may run anything. S listens for D's page
 *                          link (mutual TLS with the cluster's certificates; D's first
 *                          frame must carry the migration's secret), then asks D to restore.
 *   D  (confirm)           as above.
 *   D  [restoring]         D opens the page link, starts `criu lazy-pages` on its own
 *                          unix socket, restores with --lazy-pages (held), then
 *   D  [postcopy]          runs the copy at once, unlocks and announces the address; the
 *                          answer to the restore ends S's freeze. Pages arrive as the pod
 *                          touches them and in the background.
 *   D  (pulled)            `criu lazy-pages` ended well: every page is here; D says DONE
 *                          on the link.
 *   S  [committed]         on DONE only: S's stopped copy is killed; COMMITTED on the
 *                          link, and resume (the HTTP request) as in pre-copy; D's
 *                          journal goes, then S's.
 *
 * Post-copy failures: until DONE, the only complete copy of the pod's memory is
 * S's stopped one.
 * - The link fails or is silent (DEST_SILENT_MS), D's lazy-pages daemon fails,
 *   or S aborts: D kills its copy first (before CRIU lets go of its memory),
 *   then drops it. What the pod did on D since the freeze is lost: unlike
 *   pre-copy, a failed post-copy migration does not keep it.
 * - S's link silent for SOURCE_SILENT_MS (longer than D's limit plus
 *   ASK_AFTER_MS), its dump's CRIU failing, or D's restore failing: S aborts as
 *   above (its stopped copy continues once CRIU has let go of it).
 * - DONE sent but nothing heard back within ASK_AFTER_MS: D locks its copy's
 *   network (never two reachable copies) and asks S's outcome: committed ->
 *   unlocked, the pod is D's; aborted -> killed.
 * - An agent killed: S [postcopy] recovers as [frozen] (aborted: its copy
 *   continues, D told to drop); D [postcopy] locks the copy's network at
 *   start (its lazy-pages daemon died with the agent, so pages may be
 *   missing) and keeps it only if S says committed.
 *   Known gap: between D's agent dying and its restart, D's copy runs with
 *   its network up and without its missing pages (the kernel then maps zero
 *   pages); S resumes its own copy once the link is gone. A guard process
 *   outliving the agent, holding the bridge open until it has killed the
 *   copy, would close it.
 *
 * Failpoints: migrate.round, migrate.freezing, migrate.frozen,
 * migrate.delta-sent, migrate.ready, migrate.committed, migrate.resuming,
 * migrate.pulling (S); migrate.dest-prepared, migrate.dest-ready,
 * migrate.dest-resuming, migrate.dest-pulling (D).
 */
import type { CheckpointContext } from "../checkpoint/checkpointer.ts";
import type { ImageTrust } from "../trust/image-trust.ts";
import { MigrationDestination } from "./destination.ts";
import type { MigrationClaim, PeerMigrationClients } from "./peer.ts";
import { type RecoveryPlan, recoverMigrationsAfter, recoverMigrationsBefore } from "./recovery.ts";
import { claimOf, type MigrateReport, type MigrateRequest, type MigrationProgress, migratePod, type SourceDeps } from "./source.ts";

export type { MigrationClaim, MigrationOutcome, PeerMigrationClient, PeerMigrationClients, HeldRestore } from "./peer.ts";
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
    this.destination = new MigrationDestination({ ctx: o.ctx, peers: o.peers, hostName: o.hostName, ...(o.onArrived ? { onArrived: o.onArrived } : {}) });
  }

  migrate(name: string, req: MigrateRequest, onProgress?: (p: MigrationProgress) => void): Promise<MigrateReport> {
    return migratePod(this.#source, name, req, onProgress);
  }

  /** What became of migration `id`, and (while it stands) which pod goes where: for a destination that asks. */
  claim(id: string): MigrationClaim {
    return claimOf(this.o.ctx.stateDir, this.#source.active, id);
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
