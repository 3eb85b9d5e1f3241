/**
 * The destination side of a live migration (see index.ts for the state
 * machine): restore the pod with its tasks held stopped and its network
 * locked, answer "ready", then run it only when the source says it committed,
 * or drop it when the source says it aborted. A destination that hears
 * nothing asks the source, and keeps its copy held until it knows.
 * Post-copy's side (a copy that runs while its pages arrive) is here too, not
 * in a file of its own: it shares the held copies, the staged rounds, the
 * journal and the secret checks with pre-copy's, hence the length.
 */
import { timingSafeEqual } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { failpoint } from "../debug/failpoints.ts";
import { type CheckpointContext, claim, unlockAll } from "../checkpoint/checkpointer.ts";
import { removeJournal } from "../checkpoint/journal.ts";
import { stageBaseCopy } from "../checkpoint/placement.ts";
import { checkRestore, makeCriuWorkDir, materialize, prepareHost, restoreProcesses, startRestore, undoRestore } from "../checkpoint/restore.ts";
import { AutopodError, ConflictError, errorMessage, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { MigrationGuard } from "./guard.ts";
import { MIGRATION_DIR, readMigrationJournal, removeMigrationJournal, writeMigrationJournal } from "./journal.ts";
import { childPath } from "../pods/child-path.ts";
import { materializeTreeAsync, type StagedFile } from "../checkpoint/tree.ts";
import type { HeldRestore, MigrationClaim, MigrationRestoreRequest, MigrationStageRequest, PeerMigrationClients, StageState } from "./peer.ts";
import { listenForCriu, PageBridge } from "./page-link.ts";
import type { LazyCriu } from "../platform/checkpoint-host.ts";

/** How long a held copy waits for the source's word before asking, and between asks. */
export const ASK_AFTER_MS = 3000;
export const ASK_EVERY_MS = 2000;
/**
 * Post-copy: how long a running copy's page link may hear nothing before the copy is killed (the source
 * then runs its own; SOURCE_SILENT_MS, the source's limit, is longer than this plus ASK_AFTER_MS).
 */
export const DEST_SILENT_MS = 5000;
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

/** A post-copy copy that runs here while its pages arrive (or arrived, and the source's commit is awaited). */
interface Pulling {
  id: string;
  pod: string;
  source: string;
  pid: number;
  netnsPath: string;
  secret: string;
  rounds: string[];
  tmp: string;
  releaseMerging: () => void;
  bridge: PageBridge | null;
  criu: LazyCriu | null;
  /** Kills (pages missing) or cuts off (all here) the copy if this agent dies before it settles it (guard.ts); null after a restart. */
  guard: MigrationGuard | null;
  /** pulling: pages still arriving; pulled: all here, the commit awaited; isolated: unheard, its network locked while the source is asked. */
  state: "pulling" | "pulled" | "isolated";
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
  readonly #pulling = new Map<string, Pulling>();
  readonly #stages = new Map<string, Stage>();
  #isStopped = false;

  constructor(readonly deps: DestinationDeps) {}

  /** Restore `image` as `pod`, held stopped; resolves once the copy is ready to run. */
  async restore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore> {
    const { ctx } = this.deps;
    if (this.#held.has(id) || this.#pulling.has(id) || readMigrationJournal(ctx.stateDir, id))
      throw new ConflictError(`Migration "${id}" is known here already`);
    // Asked while the image is checked (the source is frozen meanwhile); nothing is made before the answer.
    const confirmed = this.#confirm(id, req);
    confirmed.catch(() => undefined);
    ctx.pods.expectIncoming(req.pod, req.source);
    try {
      return req.pages ? await this.#restorePostcopy(id, req, req.pages.port, confirmed) : await this.#restore(id, req, confirmed);
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

  /** Both restores' start: the image checked, the source's confirmation awaited, the pod claimed, the store's merging held. */
  async #startRestore(id: string, req: MigrationRestoreRequest, confirmed: Promise<void>, opts: Parameters<typeof startRestore>[2]) {
    const { ctx } = this.deps;
    const t0 = performance.now();
    const checked = await checkRestore(ctx, req.image, {});
    await confirmed;
    if (checked.name !== req.pod) throw new InvalidArgumentError(`Image ${req.image.slice(0, 12)} is pod "${checked.name}", not "${req.pod}"`);
    if (checked.existing) throw new ConflictError(`Pod "${req.pod}" exists here already: a migration brings a pod this host does not have`);
    claim(ctx, req.pod);
    const releaseMerging = ctx.store.holdMerging();
    const run = startRestore(ctx, checked, opts, t0);
    const journal = { role: "destination", id, pod: req.pod, peer: req.source, image: req.image, secret: req.secret } as const;
    return { run, releaseMerging, journal };
  }

  async #restore(id: string, req: MigrationRestoreRequest, confirmed: Promise<void>): Promise<HeldRestore> {
    const { ctx } = this.deps;
    const { run, releaseMerging, journal } = await this.#startRestore(id, req, confirmed, {});
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
    if (this.#pulling.has(id)) return this.#commitPulled(id, secret);
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
    const p = this.#pulling.get(id);
    if (p) {
      if (secret !== null) this.#checkPullingSecret(p, secret);
      return this.#dropPulling(id, new Error("the source aborted the migration"));
    }
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
    return [...this.#held.keys(), ...this.#pulling.keys()];
  }

  /**
   * Post-copy: restore with the memory left at the source, fetched by `criu lazy-pages` through the
   * page link; the copy runs as soon as it is restored. It is killed if the link fails before every
   * page arrived; once all arrived it is kept, and kept running only when the source says it committed.
   */
  async #restorePostcopy(id: string, req: MigrationRestoreRequest, port: number, confirmed: Promise<void>): Promise<HeldRestore> {
    const { ctx } = this.deps;
    const { run, releaseMerging, journal } = await this.#startRestore(id, req, confirmed, { lazyPages: true });
    writeMigrationJournal(ctx.stateDir, { ...journal, phase: "restoring", pid: null });
    let pid: number | null = null;
    let criu: LazyCriu | null = null;
    let guard: MigrationGuard | null = null;
    let isRunning = false;
    const bridge = new PageBridge(DEST_SILENT_MS, {
      onFailed: (why) => {
        if (isRunning) void this.#pullFailed(id, why);
      },
      onCommitted: () => {
        void this.#commitPulled(id, null).catch(() => undefined);
      },
    });
    const socketPath = join(run.tmp, "pages.sock");
    const criuSide = listenForCriu(socketPath, bridge);
    // The page link's handshake goes on while the files are made and the host prepared (a failure: awaited below, or the bridge closed).
    const linked = this.deps.peers.client(req.source).pageLink(port, { peer: req.source, id, secret: req.secret }, bridge);
    linked.catch(() => undefined);
    // The guard's process starts now too; it is armed with the copy's pid once CRIU has made it.
    const preparedGuard = MigrationGuard.prepare();
    try {
      // A round staged here holds the memory this image leaves out: its files are not used, they are written
      // whole. What is used is the base's copy a stage makes (sendBaseAhead): waited for, as it is made in place.
      await this.#takeStage(id);
      const placed = await materialize(ctx, run);
      // The lazy-pages daemon reads the images and gets ready while the host is prepared.
      const daemon = ctx.host.lazyPages({ criu: run.criu.path, imagesDir: run.imagesDir, workDir: makeCriuWorkDir(run), pageSocket: socketPath });
      criu = daemon;
      const prepared = await prepareHost(ctx, run, placed);
      await failpoint("migrate.dest-prepared");
      await linked;
      run.phase("link");
      await daemon.ready;
      run.phase("lazyPages");
      // (Its daemon listens already: the restore takes its memory from it.)
      const { restored } = await restoreProcesses(ctx, run, prepared, placed.verified, async () => {});
      criuSide.stop();
      pid = restored.pid;
      // Before it runs: if this agent dies while pages are missing, the guard kills the copy.
      await preparedGuard.arm(pid, prepared.target.netnsPath);
      guard = preparedGuard;
      run.phase("guard");
      await placed.verified;
      run.phase("verify");
      if (bridge.isClosed) throw new Error("the page link failed during the restore");
      writeMigrationJournal(ctx.stateDir, { ...journal, phase: "postcopy", pid });
      removeJournal(ctx.stateDir, req.pod);
      // It runs now: its missing pages come as it touches them, and the rest in the background.
      const connections = ctx.host.continueTree(pid);
      run.phase("continue");
      await unlockAll(ctx.host, prepared.target.netnsPath);
      ctx.host.nudgePeers(prepared.target.netnsPath, connections);
      run.phase("unlock");
      ctx.log.debug("a migrating pod runs: its network unlocked, its peers nudged", { pod: req.pod, id, connections: connections.length });
      ctx.pods.adoptRestored(req.pod, pid);
      run.phase("resume");
      const p: Pulling = {
        id,
        pod: req.pod,
        source: req.source,
        pid,
        netnsPath: prepared.target.netnsPath,
        secret: req.secret,
        rounds: req.rounds,
        tmp: run.tmp,
        releaseMerging,
        bridge,
        criu,
        guard,
        state: "pulling",
        timer: null,
      };
      this.#pulling.set(id, p);
      isRunning = true;
      const lazy = criu as LazyCriu | null;
      lazy?.done.then(
        () => this.#pulled(id),
        (e: unknown) => void this.#pullFailed(id, e instanceof Error ? e : new Error(String(e))),
      );
      await ctx.pods
        .announce(req.pod)
        .catch((e: unknown) => ctx.log.warn("could not announce a migrated pod's address", { pod: req.pod, error: errorMessage(e) }));
      ctx.log.info("running a migrating pod while its pages arrive", { pod: req.pod, id, from: req.source, pid });
      await failpoint("migrate.dest-pulling");
      // The phases after "unlock" (resume, answer) pass with the copy running: not the pod's freeze (freezeEndOf).
      run.phase("answer");
      return { criuMs: Math.round(restored.durationMs), phases: run.phase.all };
    } catch (e) {
      if (isRunning) throw e;
      removeMigrationJournal(ctx.stateDir, id);
      if (pid !== null) {
        ctx.host.killTree(pid);
        await ctx.host.waitGone(pid, 10_000);
      }
      preparedGuard.release();
      bridge.close();
      (criu as LazyCriu | null)?.kill();
      return await undoRestore(ctx, run, e);
    } finally {
      this.#dropStage(id);
      criuSide.stop();
      if (!isRunning) {
        rmSync(run.tmp, { recursive: true, force: true });
        removeJournal(ctx.stateDir, req.pod);
        ctx.busy.delete(req.pod);
        releaseMerging();
      }
    }
  }

  /** Every page arrived: the source is told, and its commit awaited (unheard for ASK_AFTER_MS: the copy is cut off and the source asked). */
  #pulled(id: string): void {
    const p = this.#pulling.get(id);
    if (p?.state !== "pulling") return;
    p.state = "pulled";
    p.guard?.pulled();
    p.bridge?.sendDone(p.bridge.bytesIn);
    this.deps.ctx.log.info("every page of a migrating pod arrived", { pod: p.pod, id, bytes: p.bridge?.bytesIn });
    p.timer = setTimeout(() => void this.#isolate(id), ASK_AFTER_MS);
  }

  /** The source did not confirm: until it answers, the copy runs cut off (network locked), so two copies are never both reachable. */
  async #isolate(id: string): Promise<void> {
    const p = this.#pulling.get(id);
    if (p?.state !== "pulled" || this.#isStopped) return;
    p.state = "isolated";
    const { ctx } = this.deps;
    await ctx.host.lockNetwork(p.netnsPath).catch((e: unknown) => ctx.log.error("could not cut off a migrated pod", { pod: p.pod, error: errorMessage(e) }));
    ctx.log.warn("the source did not confirm a post-copy migration; the copy is cut off until it answers", { pod: p.pod, id });
    const ask = async () => {
      if (!this.#pulling.has(id) || this.#isStopped) return;
      let outcome = "unknown";
      try {
        outcome = await this.deps.peers.client(p.source).migrationOutcome(id);
      } catch {}
      if (outcome === "committed") return void (await this.#commitPulled(id, null).catch(() => undefined));
      if (outcome === "aborted") return void (await this.#dropPulling(id, new Error("the source says it aborted")));
      p.timer = setTimeout(() => void ask(), ASK_EVERY_MS);
    };
    await ask();
  }

  /** The source committed: the copy is the pod. Before every page arrived that cannot be. */
  async #commitPulled(id: string, secret: string | null): Promise<void> {
    const p = this.#pulling.get(id);
    if (!p) throw new NotFoundError(`No migration "${id}" is held here`);
    if (secret !== null) this.#checkPullingSecret(p, secret);
    if (p.state === "pulling") throw new ConflictError(`Migration "${id}" is still pulling its pages: it cannot be committed yet`);
    const { ctx } = this.deps;
    this.#pulling.delete(id);
    if (p.timer) clearTimeout(p.timer);
    try {
      if (p.state === "isolated") await unlockAll(ctx.host, p.netnsPath);
      removeMigrationJournal(ctx.stateDir, id);
      try {
        this.deps.onArrived?.(p.pod, p.source);
      } catch (e) {
        ctx.log.warn("could not record where a migrated pod came from", { pod: p.pod, error: errorMessage(e) });
      }
      ctx.log.info("a post-copy migration committed: the pod is this host's", { pod: p.pod, id });
    } finally {
      this.#releasePulling(p);
    }
  }

  /** The page link or the lazy-pages daemon failed: before every page arrived the copy cannot go on; it dies first, then the rest goes. */
  async #pullFailed(id: string, why: Error): Promise<void> {
    const p = this.#pulling.get(id);
    if (p?.state !== "pulling") return;
    await this.#dropPulling(id, why);
  }

  async #dropPulling(id: string, why: Error): Promise<void> {
    const p = this.#pulling.get(id);
    if (!p) return;
    this.#pulling.delete(id);
    if (p.timer) clearTimeout(p.timer);
    const { ctx } = this.deps;
    // Killed before its CRIU lets go of its memory: it never runs on a page it did not get.
    ctx.host.killTree(p.pid);
    p.bridge?.close();
    p.criu?.kill();
    try {
      await dropHeldCopy(ctx, p.pod, p.pid);
      removeMigrationJournal(ctx.stateDir, id);
      ctx.log.warn("killed the copy of a post-copy migration that failed; the source runs its own", { pod: p.pod, id, why: errorMessage(why) });
    } catch (e) {
      ctx.log.error("could not remove the copy of a failed post-copy migration", { pod: p.pod, id, error: errorMessage(e) });
    } finally {
      this.#releasePulling(p);
    }
  }

  #releasePulling(p: Pulling): void {
    const { ctx } = this.deps;
    p.guard?.release();
    p.bridge?.close();
    rmSync(p.tmp, { recursive: true, force: true });
    for (const r of p.rounds) if (ctx.catalogue.has(r)) ctx.catalogue.remove(r);
    ctx.busy.delete(p.pod);
    ctx.pods.endIncoming(p.pod);
    p.releaseMerging();
  }

  #checkPullingSecret(p: Pulling, secret: string): void {
    const a = Buffer.from(secret);
    const b = Buffer.from(p.secret);
    if (a.byteLength !== b.byteLength || !timingSafeEqual(a, b)) {
      throw new AutopodError(
        "unauthenticated",
        `Migration "${p.id}": the request does not carry the secret its source gave; only the source may resume or drop the copy`,
      );
    }
  }

  /**
   * After a restart, a post-copy copy whose journal says it was running: its pages may be missing (the
   * lazy-pages daemon died with the agent), so it is cut off at once and kept only if the source says
   * it committed (which it does only after every page arrived).
   */
  async adoptPulling(id: string, pod: string, source: string, pid: number, secret: string): Promise<void> {
    const { ctx } = this.deps;
    ctx.busy.add(pod);
    ctx.pods.expectIncoming(pod, source);
    const p: Pulling = {
      id,
      pod,
      source,
      pid,
      netnsPath: ctx.pods.target0(pod).netnsPath,
      secret,
      rounds: [],
      tmp: join(ctx.stateDir, MIGRATION_DIR, `${id}.none`),
      releaseMerging: () => {},
      bridge: null,
      criu: null,
      guard: null,
      state: "pulled",
      timer: null,
    };
    this.#pulling.set(id, p);
    await this.#isolate(id);
  }

  stop(): void {
    this.#isStopped = true;
    for (const h of this.#held.values()) if (h.timer) clearTimeout(h.timer);
    for (const p of this.#pulling.values()) if (p.timer) clearTimeout(p.timer);
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
