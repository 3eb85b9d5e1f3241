/**
 * The destination side of a live migration (see index.ts for the state
 * machine): restore the pod with its tasks held stopped and its network
 * locked, answer "ready", then run it only when the source says it committed,
 * or drop it when the source says it aborted. A destination that hears
 * nothing asks the source, and keeps its copy held until it knows.
 */
import { timingSafeEqual } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { failpoint } from "../debug/failpoints.ts";
import { type CheckpointContext, claim, unlockAll } from "../checkpoint/checkpointer.ts";
import { removeJournal } from "../checkpoint/journal.ts";
import { stageBaseCopy } from "../checkpoint/placement.ts";
import { checkRestore, materialize, prepareHost, restoreProcesses, startRestore, undoRestore } from "../checkpoint/restore.ts";
import { AutopodError, ConflictError, errorMessage, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { MIGRATION_DIR, readMigrationJournal, removeMigrationJournal, writeMigrationJournal } from "./journal.ts";
import { childPath } from "../pods/child-path.ts";
import { materializeTreeAsync, type StagedFile } from "../checkpoint/tree.ts";
import type { HeldRestore, MigrationClaim, MigrationRestoreRequest, MigrationStageRequest, PeerMigrationClients, StageState } from "./peer.ts";

/** How long a held copy waits for the source's word before asking, and between asks. */
export const ASK_AFTER_MS = 3000;
export const ASK_EVERY_MS = 2000;
/** A staged round no restore took is removed after this long. */
export const STAGE_TTL_MS = 600_000;

export interface DestinationDeps {
  ctx: CheckpointContext;
  peers: PeerMigrationClients;
  /** This host's name in the cluster. */
  hostName(): string;
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
  /** What the source's resume and abort must carry. */
  secret: string;
  /** The pre-copy rounds' images: only sources of chunks, removed when the migration ends. */
  rounds: string[];
  timer: ReturnType<typeof setTimeout> | null;
}

/** A pre-copy round's CRIU files, made before the freeze, for the final restore to patch. */
interface Stage {
  dir: string;
  /** Drops it when no restore came (the source gave up before its freeze). */
  expiry: ReturnType<typeof setTimeout>;
  /** Settles once the files are made (never rejects: a failed stage is just not used). */
  made: Promise<Map<string, StagedFile> | null>;
}

export class MigrationDestination {
  readonly #held = new Map<string, Held>();
  readonly #stages = new Map<string, Stage>();
  #isStopped = false;

  constructor(readonly deps: DestinationDeps) {}

  /** Restore `image` as `pod`, held stopped; resolves once the copy is ready to run. */
  async restore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore> {
    const { ctx } = this.deps;
    if (this.#held.has(id) || readMigrationJournal(ctx.stateDir, id)) throw new ConflictError(`Migration "${id}" is known here already`);
    // Asked while the image is checked (the source is frozen meanwhile); nothing is made before the answer.
    const confirmed = this.#confirm(id, req);
    confirmed.catch(() => undefined);
    ctx.pods.expectIncoming(req.pod, req.source);
    try {
      return await this.#restore(id, req, confirmed);
    } catch (e) {
      ctx.pods.endIncoming(req.pod);
      throw e;
    }
  }

  /**
   * Make a pre-copy round's CRIU files (`req.image`, pushed here) in the background, so that the
   * final restore, in the freeze, writes only what changed since (tree.ts's staged files). Answers at once.
   */
  async stage(id: string, req: MigrationStageRequest): Promise<void> {
    const { ctx } = this.deps;
    await this.#confirm(id, req);
    if (this.#held.has(id) || readMigrationJournal(ctx.stateDir, id)) throw new ConflictError(`Migration "${id}" is restoring here already`);
    const previous = this.#stages.get(id);
    const dir = childPath(ctx.stateDir, MIGRATION_DIR, `${id}.stage-${Date.now()}`);
    const made = (async () => {
      // The previous round's files are patched into this round's (only what changed is written), not made again.
      const before = (await previous?.made) ?? undefined;
      try {
        const manifest = ctx.catalogue.manifest(req.image);
        if (manifest.pod.name !== req.pod) throw new InvalidArgumentError(`Image ${req.image.slice(0, 12)} is pod "${manifest.pod.name}", not "${req.pod}"`);
        const t0 = performance.now();
        mkdirSync(join(ctx.stateDir, MIGRATION_DIR), { recursive: true, mode: 0o700 });
        await materializeTreeAsync(manifest.criu, ctx.store, dir, { isPrivateCopy: true, staged: before });
        const files = new Map<string, StagedFile>();
        for (const e of manifest.criu) if (e.type === "file") files.set(e.path, { path: join(dir, e.path), entry: e });
        const tc = performance.now();
        // The pod's base, as the restore will want it (baseFor's copy for an image from elsewhere): made now, not in the freeze.
        const isBaseMade = manifest.base !== undefined && !(await ctx.trust.isLocal(req.image)) && (await stageBaseCopy(ctx, manifest.base));
        ctx.log.info("staged a migration round's files", {
          id,
          pod: req.pod,
          image: req.image.slice(0, 12),
          ms: Math.round(tc - t0),
          ...(isBaseMade ? { base_ms: Math.round(performance.now() - tc) } : {}),
          patched: before !== undefined,
        });
        return files;
      } finally {
        if (previous) rmSync(previous.dir, { recursive: true, force: true });
      }
    })().catch((e: unknown) => {
      ctx.log.warn("could not stage a migration round's files; the restore writes them whole", { id, error: errorMessage(e) });
      return null;
    });
    if (previous) clearTimeout(previous.expiry);
    const expiry = setTimeout(() => this.#dropStage(id), STAGE_TTL_MS);
    this.#stages.set(id, { dir, made, expiry });
  }

  /** Where the newest staged round of migration `id` is, once made or after waiting `waitMs` for it. */
  async stageState(id: string, waitMs: number): Promise<StageState> {
    const s = this.#stages.get(id);
    if (!s) return "none";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<StageState>((resolve) => {
      timer = setTimeout(() => resolve("pending"), waitMs);
    });
    try {
      return await Promise.race([s.made.then((files): StageState => (files ? "made" : "failed")), waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The staged files of migration `id` (waiting for them to be made), taken: the caller removes them with dropStage. */
  async #takeStage(id: string): Promise<ReadonlyMap<string, StagedFile> | undefined> {
    const s = this.#stages.get(id);
    const t0 = performance.now();
    const files = (await s?.made) ?? undefined;
    this.deps.ctx.log.info("restoring a migrating pod", { id, staged: files?.size ?? 0, waited_ms: Math.round(performance.now() - t0) });
    return files;
  }

  #dropStage(id: string): void {
    const s = this.#stages.get(id);
    if (!s) return;
    this.#stages.delete(id);
    clearTimeout(s.expiry);
    void s.made.then(() => rmSync(s.dir, { recursive: true, force: true }));
  }

  /** The host the request names as its source says it drives this migration, of this pod, to this host; else the request came from another. */
  async #confirm(id: string, req: Pick<MigrationRestoreRequest, "pod" | "source">): Promise<void> {
    const me = this.deps.hostName();
    let claim: MigrationClaim;
    try {
      claim = await this.deps.peers.client(req.source).migrationClaim(id);
    } catch (e) {
      throw new AutopodError(
        "unauthenticated",
        `Cannot take pod "${req.pod}": "${req.source}" could not confirm it sent migration "${id}": ${errorMessage(e)}`,
        {
          cause: e,
        },
      );
    }
    if (claim.outcome !== "pending" || claim.pod !== req.pod || claim.to !== me) {
      this.deps.ctx.log.warn("refused a migration its named source does not confirm", { id, pod: req.pod, source: req.source, claim });
      throw new AutopodError(
        "unauthenticated",
        `Cannot take pod "${req.pod}": "${req.source}" does not confirm migration "${id}" of pod "${req.pod}" to "${me}" (it answers ${claim.outcome}${claim.pod ? `, pod "${claim.pod}" to "${claim.to}"` : ""}); the request came from another host`,
      );
    }
  }

  async #restore(id: string, req: MigrationRestoreRequest, confirmed: Promise<void>): Promise<HeldRestore> {
    const { ctx } = this.deps;
    const t0 = performance.now();
    const checked = await checkRestore(ctx, req.image, {});
    await confirmed;
    if (checked.name !== req.pod) throw new InvalidArgumentError(`Image ${req.image.slice(0, 12)} is pod "${checked.name}", not "${req.pod}"`);
    if (checked.existing) throw new ConflictError(`Pod "${req.pod}" exists here already: a migration brings a pod this host does not have`);
    claim(ctx, req.pod);
    const releaseMerging = ctx.store.holdMerging();
    const run = startRestore(ctx, checked, {}, t0);
    const journal = { role: "destination", id, pod: req.pod, peer: req.source, image: req.image, secret: req.secret } as const;
    writeMigrationJournal(ctx.stateDir, { ...journal, phase: "restoring", pid: null });
    let pid: number | null = null;
    let isHeld = false;
    try {
      const placed = await materialize(ctx, run, await this.#takeStage(id));
      const prepared = await prepareHost(ctx, run, placed);
      await failpoint("migrate.dest-prepared");
      const { restored } = await restoreProcesses(ctx, run, prepared, placed.verified);
      pid = restored.pid;
      await placed.verified;
      run.phase("verify");
      writeMigrationJournal(ctx.stateDir, { ...journal, phase: "ready", pid });
      // From here the migration's journal decides what becomes of the held copy, not the restore's.
      removeJournal(ctx.stateDir, req.pod);
      await failpoint("migrate.dest-ready");
      this.#held.set(id, {
        id,
        pod: req.pod,
        source: req.source,
        pid,
        netnsPath: prepared.target.netnsPath,
        releaseMerging,
        secret: req.secret,
        rounds: req.rounds,
        timer: null,
      });
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
      this.#dropStage(id);
      rmSync(run.tmp, { recursive: true, force: true });
      if (!isHeld) {
        removeJournal(ctx.stateDir, req.pod);
        ctx.busy.delete(req.pod);
        releaseMerging();
      }
    }
  }

  /** The source committed: the held copy runs. `secret` (null: this agent learnt it by asking) must be the migration's. */
  async resume(id: string, secret: string | null): Promise<void> {
    this.#checkSecret(id, secret);
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
  async abort(id: string, secret: string | null): Promise<void> {
    this.#dropStage(id);
    const h = this.#held.get(id);
    if (!h) return;
    this.#checkSecret(id, secret);
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
  adopt(id: string, pod: string, source: string, pid: number, secret: string): void {
    const { ctx } = this.deps;
    ctx.busy.add(pod);
    ctx.pods.expectIncoming(pod, source);
    this.#held.set(id, { id, pod, source, pid, netnsPath: ctx.pods.target0(pod).netnsPath, releaseMerging: () => {}, secret, rounds: [], timer: null });
    this.#watch(id, 0);
  }

  /** Ids of the copies held now. */
  held(): string[] {
    return [...this.#held.keys()];
  }

  stop(): void {
    this.#isStopped = true;
    for (const h of this.#held.values()) if (h.timer) clearTimeout(h.timer);
    for (const id of [...this.#stages.keys()]) this.#dropStage(id);
  }

  #checkSecret(id: string, secret: string | null): void {
    const h = this.#held.get(id);
    if (!h || secret === null) return;
    const a = Buffer.from(secret);
    const b = Buffer.from(h.secret);
    if (a.byteLength !== b.byteLength || !timingSafeEqual(a, b)) {
      throw new AutopodError(
        "unauthenticated",
        `Migration "${id}": the request does not carry the secret its source gave; only the source may resume or drop the copy`,
      );
    }
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
        if (outcome === "committed" && this.#held.has(id)) return await this.resume(id, null);
        if (outcome === "aborted" && this.#held.has(id)) return await this.abort(id, null);
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
