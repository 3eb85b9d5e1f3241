/**
 * The destination side of a live migration (see index.ts for the state
 * machine): restore the pod with its tasks held stopped and its network
 * locked, answer "ready", then run it only when the source says it committed,
 * or drop it when the source says it aborted. A destination that hears
 * nothing asks the source, and keeps its copy held until it knows.
 */
import { rmSync } from "node:fs";
import { failpoint } from "../debug/failpoints.ts";
import { type CheckpointContext, claim, unlockAll } from "../checkpoint/checkpointer.ts";
import { removeJournal } from "../checkpoint/journal.ts";
import { checkRestore, materialize, prepareHost, restoreProcesses, startRestore, undoRestore } from "../checkpoint/restore.ts";
import { ConflictError, errorMessage, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { readMigrationJournal, removeMigrationJournal, writeMigrationJournal } from "./journal.ts";
import type { HeldRestore, MigrationRestoreRequest, PeerMigrationClients } from "./peer.ts";

/** How long a held copy waits for the source's word before asking, and between asks. */
export const ASK_AFTER_MS = 3000;
export const ASK_EVERY_MS = 2000;

export interface DestinationDeps {
  ctx: CheckpointContext;
  peers: PeerMigrationClients;
  /** A migrated pod runs here now, from host `source` (the evacuation's arrivals record). */
  onArrived?(pod: string, source: string): void;
}

interface Held {
  id: string;
  pod: string;
  source: string;
  pid: number;
  netnsPath: string;
  releaseMerging: () => void;
  /** The pre-copy rounds' images: only sources of chunks, removed when the migration ends. */
  rounds: string[];
  timer: ReturnType<typeof setTimeout> | null;
}

export class MigrationDestination {
  readonly #held = new Map<string, Held>();
  #isStopped = false;

  constructor(readonly deps: DestinationDeps) {}

  /** Restore `image` as `pod`, held stopped; resolves once the copy is ready to run. */
  async restore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore> {
    const { ctx } = this.deps;
    if (this.#held.has(id) || readMigrationJournal(ctx.stateDir, id)) throw new ConflictError(`Migration "${id}" is known here already`);
    ctx.pods.expectIncoming(req.pod, req.source);
    try {
      return await this.#restore(id, req);
    } catch (e) {
      ctx.pods.endIncoming(req.pod);
      throw e;
    }
  }

  async #restore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore> {
    const { ctx } = this.deps;
    const t0 = performance.now();
    const checked = await checkRestore(ctx, req.image, {});
    if (checked.name !== req.pod) throw new InvalidArgumentError(`Image ${req.image.slice(0, 12)} is pod "${checked.name}", not "${req.pod}"`);
    if (checked.existing) throw new ConflictError(`Pod "${req.pod}" exists here already: a migration brings a pod this host does not have`);
    claim(ctx, req.pod);
    const releaseMerging = ctx.store.holdMerging();
    const run = startRestore(ctx, checked, {}, t0);
    writeMigrationJournal(ctx.stateDir, { role: "destination", id, pod: req.pod, peer: req.source, phase: "restoring", image: req.image, pid: null });
    let pid: number | null = null;
    let isHeld = false;
    try {
      const placed = await materialize(ctx, run);
      const prepared = await prepareHost(ctx, run, placed);
      await failpoint("migrate.dest-prepared");
      const { restored } = await restoreProcesses(ctx, run, prepared, placed.verified);
      pid = restored.pid;
      await placed.verified;
      run.phase("verify");
      writeMigrationJournal(ctx.stateDir, { role: "destination", id, pod: req.pod, peer: req.source, phase: "ready", image: req.image, pid });
      // From here the migration's journal decides what becomes of the held copy, not the restore's.
      removeJournal(ctx.stateDir, req.pod);
      await failpoint("migrate.dest-ready");
      this.#held.set(id, { id, pod: req.pod, source: req.source, pid, netnsPath: prepared.target.netnsPath, releaseMerging, rounds: req.rounds, timer: null });
      isHeld = true;
      this.#watch(id, ASK_AFTER_MS);
      ctx.log.info("holding a migrating pod, ready to run", { pod: req.pod, id, from: req.source, pid });
      return { criuMs: Math.round(restored.durationMs), phases: run.phase.all };
    } catch (e) {
      removeMigrationJournal(ctx.stateDir, id);
      if (pid !== null) {
        ctx.host.killTree(pid);
        await ctx.host.waitGone(pid, 10_000);
      }
      return await undoRestore(ctx, run, e);
    } finally {
      rmSync(run.tmp, { recursive: true, force: true });
      if (!isHeld) {
        removeJournal(ctx.stateDir, req.pod);
        ctx.busy.delete(req.pod);
        releaseMerging();
      }
    }
  }

  /** The source committed: the held copy runs. */
  async resume(id: string): Promise<void> {
    const h = this.#take(id);
    const { ctx } = this.deps;
    try {
      await failpoint("migrate.dest-resuming");
      const connections = ctx.host.continueTree(h.pid);
      await unlockAll(ctx.host, h.netnsPath);
      ctx.host.nudgePeers(h.netnsPath, connections);
      ctx.pods.adoptRestored(h.pod, h.pid);
      removeMigrationJournal(ctx.stateDir, id);
      try {
        this.deps.onArrived?.(h.pod, h.source);
      } catch (e) {
        ctx.log.warn("could not record where a migrated pod came from", { pod: h.pod, error: errorMessage(e) });
      }
      // The source's route may have answered ARP for the address while both copies existed: this host has it now.
      await ctx.pods.announce(h.pod).catch((e: unknown) => ctx.log.warn("could not announce a migrated pod's address", { pod: h.pod, error: errorMessage(e) }));
      ctx.log.info("resumed a migrated pod", { pod: h.pod, id, pid: h.pid });
    } finally {
      this.#release(h);
    }
  }

  /** The source runs its own copy: the held one goes, and the pod with it. */
  async abort(id: string): Promise<void> {
    const h = this.#held.get(id);
    if (!h) return;
    this.#take(id);
    const { ctx } = this.deps;
    try {
      await dropHeldCopy(ctx, h.pod, h.pid);
      removeMigrationJournal(ctx.stateDir, id);
      ctx.log.info("dropped the held copy of a migration the source aborted", { pod: h.pod, id });
    } finally {
      this.#release(h);
    }
  }

  /** A copy recovered from the journal after a restart: held again, and the source asked at once. */
  adopt(id: string, pod: string, source: string, pid: number): void {
    const { ctx } = this.deps;
    ctx.busy.add(pod);
    ctx.pods.expectIncoming(pod, source);
    this.#held.set(id, { id, pod, source, pid, netnsPath: ctx.pods.target0(pod).netnsPath, releaseMerging: () => {}, rounds: [], timer: null });
    this.#watch(id, 0);
  }

  /** Ids of the copies held now. */
  held(): string[] {
    return [...this.#held.keys()];
  }

  stop(): void {
    this.#isStopped = true;
    for (const h of this.#held.values()) if (h.timer) clearTimeout(h.timer);
  }

  #take(id: string): Held {
    const h = this.#held.get(id);
    if (!h) throw new NotFoundError(`No migration "${id}" is held here`);
    this.#held.delete(id);
    if (h.timer) clearTimeout(h.timer);
    return h;
  }

  #release(h: Held): void {
    const { ctx } = this.deps;
    for (const r of h.rounds) if (ctx.catalogue.has(r)) ctx.catalogue.remove(r);
    ctx.busy.delete(h.pod);
    ctx.pods.endIncoming(h.pod);
    h.releaseMerging();
  }

  /** Ask the source what became of the migration, until it says committed or aborted. */
  #watch(id: string, delayMs: number): void {
    const h = this.#held.get(id);
    if (!h || this.#isStopped) return;
    h.timer = setTimeout(async () => {
      if (!this.#held.has(id)) return;
      let outcome = "unknown";
      try {
        outcome = await this.deps.peers.client(h.source).migrationOutcome(id);
      } catch (e) {
        this.deps.ctx.log.warn("cannot ask the source what became of a migration; the copy stays held", { pod: h.pod, id, error: errorMessage(e) });
      }
      try {
        if (outcome === "committed" && this.#held.has(id)) return await this.resume(id);
        if (outcome === "aborted" && this.#held.has(id)) return await this.abort(id);
      } catch (e) {
        this.deps.ctx.log.error("acting on a migration's outcome failed", { pod: h.pod, id, outcome, error: errorMessage(e) });
        return;
      }
      this.#watch(id, ASK_EVERY_MS);
    }, delayMs);
  }
}

/** Kill a held (never run) copy and remove the pod that was made for it. */
export async function dropHeldCopy(ctx: CheckpointContext, pod: string, pid: number | null): Promise<void> {
  if (pid !== null && ctx.host.isAlive(pid)) {
    ctx.host.killTree(pid);
    await ctx.host.waitGone(pid, 10_000);
  }
  const rec = ctx.pods.list().find((p) => p.name === pod);
  if (!rec) return;
  await ctx.host.removeCriuLock(ctx.pods.target0(pod).netnsPath).catch(() => []);
  ctx.pods.abortRestore(pod);
  await ctx.pods.releaseCheckpointed(pod).catch(() => undefined);
  await ctx.pods.remove(pod, true);
}
