/**
 * The source side of a live migration: pre-flight, pre-copy rounds, the
 * freeze and handover, commit (see index.ts for the state machine). It reuses
 * the checkpoint steps (checkpoint.ts): a round is a --leave-running
 * checkpoint, the freeze a stop-checkpoint whose tasks stay stopped until the
 * destination holds its copy ready.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { failpoint } from "../debug/failpoints.ts";
import { type CheckpointContext, claim, unlockAll } from "../checkpoint/checkpointer.ts";
import {
  captureBase,
  captureFiles,
  captureImages,
  type CheckpointRequest,
  type CheckpointRun,
  checkCheckpoint,
  checkpointPod,
  commitImage,
  dumpStopped,
  endCheckpointWork,
  killOrContinue,
  startCheckpoint,
  undoCheckpoint,
} from "../checkpoint/checkpoint.ts";
import { requireCriu } from "../checkpoint/host-compat.ts";
import { ConflictError, errorMessage, InvalidArgumentError, NotFoundError, PreconditionError, UnavailableError } from "../errors.ts";
import { pushImage, type TransferReport } from "../transfer/push.ts";
import type { ImageTrust } from "../trust/image-trust.ts";
import { readMigrationJournal, removeMigrationJournal, writeMigrationJournal, type SourceJournal } from "./journal.ts";
import type { MigrationClaim, MigrationOutcome, PeerMigrationClient, PeerMigrationClients } from "./peer.ts";
import { preflightRefusal } from "./preflight.ts";
import { predictFreezeMs, shouldFreeze } from "./stop-rule.ts";
import { freezeAndHandOverPostcopy, sendBaseAhead } from "./postcopy-source.ts";

export type MigrationMode = "precopy" | "postcopy" | "stop-and-copy";

/**
 * "auto" (the CLI's default): post-copy for a pod holding more than AUTO_POSTCOPY_MIN_BYTES, pre-copy
 * below; with maxDowntimeMs, pre-copy rounds while they promise a freeze that fits, and post-copy
 * instead of a refusal when they never do.
 */
export type RequestedMode = MigrationMode | "auto";

/**
 * Measured here (bench/migrate.ts): without soft-dirty tracking, pre-copy's final dump reads all of the pod's
 * memory (about 0.5 s per GiB) and its destination restores all of it, so its freeze grows with the pod
 * (11.5 s at 1 GiB on a 1 Gbit link); post-copy's freeze does not. Below this size pre-copy's freeze is
 * within a few hundred milliseconds of post-copy's, and pre-copy keeps the stronger failure guarantee
 * (nothing the pod did is ever lost; post-copy loses what it did on the destination if the page pull fails).
 */
export const AUTO_POSTCOPY_MIN_BYTES = 256 << 20;

/** Rounds never promised a freeze within --max-downtime. */
export class FreezeTooLongError extends PreconditionError {
  override name = "FreezeTooLongError";
  constructor(
    message: string,
    readonly rounds: RoundReport[],
  ) {
    super(message);
  }
}

export interface MigrateRequest {
  to: string;
  mode: RequestedMode;
  /** Pre-copy rounds at most (the stop rule may end them sooner). */
  maxRounds: number;
  /**
   * Turns shared by several migrations at once (an evacuation, src/evacuate/freeze-turns.ts):
   * each round and the freeze wait for theirs, and release it when done (a release may be called
   * more than once: post-copy releases its freeze's turn when the pod runs there, and again at the end).
   * None: no waiting.
   */
  turns?: { round(): Promise<() => void>; freeze(): Promise<() => void> };
  /** Freeze only once the predicted freeze fits (predictFreezeMs); refused after maxRounds if it never does. Null: the stop rule decides. */
  maxDowntimeMs?: number | null;
}

/** What a migration reports as it goes (the CLI prints these). */
export interface MigrationProgress {
  phase: "preflight" | "round" | "freeze" | "delta" | "restore" | "pages" | "commit" | "resume" | "done";
  round?: number;
  bytesSent?: number;
  bytesOffered?: number;
  ms?: number;
  message: string;
}

export interface RoundReport {
  round: number;
  /** How long the round's --leave-running dump paused the pod. */
  pauseMs: number;
  bytesOffered: number;
  bytesSent: number;
  wireBytes: number;
  pushMs: number;
  ms: number;
}

export interface MigrateReport {
  id: string;
  pod: string;
  from: string;
  to: string;
  mode: MigrationMode;
  rounds: RoundReport[];
  /** The freeze's own transfer: what changed since the last round. */
  final: { bytesOffered: number; bytesSent: number; wireBytes: number };
  /** From the final dump's start until the destination's copy runs. */
  freezeMs: number;
  /** What the rounds predicted the freeze would take (null: no round). */
  predictedFreezeMs: number | null;
  /** Where the freeze went, in order: dump, capture, delta, restore (the destination's), commit, resume. */
  freezePhases: Record<string, number>;
  /** The destination's restore, by phase. */
  restorePhases: Record<string, number>;
  /** The final checkpoint here, by phase (checkpoint.ts's: dump, then files, base, images and commit, which are the freeze's capture). */
  capturePhases: Record<string, number>;
  totalMs: number;
  bytesOffered: number;
  bytesSent: number;
  /** Bytes offered that the peer had already (dedup, and pages unchanged since a round). */
  bytesSavedByDedup: number;
  /** The destination confirmed its copy runs; false: it resumes once it hears the outcome (the source committed). */
  isResumeConfirmed: boolean;
  /** Post-copy: the page pull after the destination's copy ran (bytes of CRIU's page protocol that crossed the link, and how long until every page had arrived); null for other modes. */
  pages: { bytes: number; ms: number } | null;
}

export interface SourceDeps {
  ctx: CheckpointContext;
  trust: ImageTrust;
  peers: PeerMigrationClients;
  /** This host's name in the cluster. */
  hostName(): string;
  /** Ids of the migrations this agent drives now: their outcome is "pending". */
  active: Set<string>;
}

/** What became of migration `id`, as its source knows it. Unknown ids were aborted: the journal is written before the peer hears the id. */
export function outcomeOf(stateDir: string, active: ReadonlySet<string>, id: string): MigrationOutcome {
  const j = readMigrationJournal(stateDir, id);
  if (j?.role !== "source") return "aborted";
  if (j.phase === "committed") return "committed";
  return active.has(id) ? "pending" : "aborted";
}

/** outcomeOf, with the pod and destination when this host is the migration's source. */
export function claimOf(stateDir: string, active: ReadonlySet<string>, id: string): MigrationClaim {
  const outcome = outcomeOf(stateDir, active, id);
  const j = readMigrationJournal(stateDir, id);
  return j?.role === "source" && outcome !== "aborted" ? { outcome, pod: j.pod, to: j.peer } : { outcome, pod: null, to: null };
}

/** Move a running pod to a peer: it ends running on exactly one of the two. */
export async function migratePod(
  deps: SourceDeps,
  name: string,
  req: MigrateRequest,
  onProgress: (p: MigrationProgress) => void = () => {},
): Promise<MigrateReport> {
  const { ctx } = deps;
  const t0 = performance.now();
  if (!Number.isInteger(req.maxRounds) || req.maxRounds < 0 || req.maxRounds > 64) {
    throw new InvalidArgumentError(`--max-rounds must be a whole number from 0 to 64, not "${req.maxRounds}"`);
  }
  const max = req.maxDowntimeMs ?? null;
  if (max !== null && (!Number.isInteger(max) || max < 1 || max > 600_000)) {
    throw new InvalidArgumentError(`--max-downtime must be milliseconds from 1 to 600000, not "${max}"`);
  }
  if (max !== null && req.mode !== "precopy" && req.mode !== "auto") {
    throw new InvalidArgumentError(`--max-downtime needs --mode precopy (or no --mode): a ${req.mode} freeze cannot be predicted before it starts`);
  }
  const from = deps.hostName();
  if (req.to === from) throw new InvalidArgumentError(`Pod "${name}" is on "${from}" already: name another peer`);
  const peer = deps.peers.client(req.to);
  const view = ctx.pods.get(name);
  if (view.state !== "running") throw new ConflictError(`Cannot migrate pod "${name}": it is ${view.state}, not running`);
  let mode: MigrationMode =
    req.mode === "auto" ? (max === null && (ctx.pods.memoryOf(name) ?? 0) > AUTO_POSTCOPY_MIN_BYTES ? "postcopy" : "precopy") : req.mode;

  onProgress({ phase: "preflight", message: `asking "${req.to}" whether it can take pod "${name}"` });
  await preflight(ctx, peer, name, req.to);

  const id = randomUUID();
  const secret = randomBytes(32).toString("hex");
  const journal: SourceJournal = { role: "source", id, pod: name, peer: req.to, phase: "precopy", image: null, pid: null, secret };
  writeMigrationJournal(ctx.stateDir, journal);
  deps.active.add(id);
  // A round's image is only a source of chunks (its files were captured while the pod ran): it goes afterwards, here and there.
  const roundImages: string[] = [];
  try {
    let rounds: RoundReport[] = [];
    if (mode === "precopy") {
      try {
        rounds = await precopy(deps, peer, id, name, req, roundImages, onProgress);
      } catch (e) {
        if (!(req.mode === "auto" && e instanceof FreezeTooLongError)) throw e;
        // The freeze would not fit: post-copy's does not grow with the pod's memory.
        mode = "postcopy";
        rounds = e.rounds;
        onProgress({ phase: "round", message: `${errorMessage(e)}: post-copy instead` });
      }
    }
    // Post-copy without a round: the base goes ahead while the pod runs (a round carried it already).
    const baseAhead = mode === "postcopy" && rounds.length === 0 ? await sendBaseAhead(deps, peer, id, name, req.to, roundImages, onProgress) : null;
    const release = await req.turns?.freeze();
    try {
      const h: Handover = { id, name, req: { ...req, mode }, from, journal, rounds, roundImages, t0, baseAhead, ...(release ? { endFreeze: release } : {}) };
      return mode === "postcopy" ? await freezeAndHandOverPostcopy(deps, peer, h, onProgress) : await freezeAndHandOver(deps, peer, h, onProgress);
    } finally {
      release?.();
    }
  } catch (e) {
    // Failed before the freeze (a round, a refusal of the final checkpoint): the pod runs on here, nothing is held there.
    if (readMigrationJournal(ctx.stateDir, id)?.phase === "precopy") {
      removeMigrationJournal(ctx.stateDir, id);
      // The peer drops the rounds it staged.
      void peer.migrationAbort(id, secret).catch(() => undefined);
    }
    throw e;
  } finally {
    deps.active.delete(id);
    for (const r of roundImages) if (ctx.catalogue.has(r)) ctx.catalogue.remove(r);
  }
}

async function preflight(ctx: CheckpointContext, peer: PeerMigrationClient, name: string, to: string): Promise<void> {
  const r = ctx.pods.record(name);
  const criu = await requireCriu(ctx.host, ctx.criu);
  const [info, peerPods] = await Promise.all([peer.info(), peer.pods()]);
  const memoryBytes = ctx.pods.memoryOf(name) ?? 0;
  const why = preflightRefusal(
    { name, address: r.spec.address, memoryBytes, diskBytes: memoryBytes + (64 << 20), criuVersion: criu.version, cpuFlags: ctx.host.cpuFlags() },
    info,
    peerPods,
  );
  if (why) throw new PreconditionError(`Cannot migrate pod "${name}" to "${to}": ${why}; nothing moved`);
}

async function precopy(
  deps: SourceDeps,
  peer: PeerMigrationClient,
  id: string,
  name: string,
  req: MigrateRequest,
  roundImages: string[],
  onProgress: (p: MigrationProgress) => void,
): Promise<RoundReport[]> {
  const { ctx } = deps;
  const rounds: RoundReport[] = [];
  const max = req.maxDowntimeMs ?? null;
  let staging: Promise<unknown> = Promise.resolve();
  // One extra round for a long wait at most: on a busy peer every stage is slow, and each round pauses the pod.
  const stage = { isReRounded: false };
  for (;;) {
    if (max === null) {
      if (shouldFreeze(rounds, req.maxRounds) && (await isStagedInTime(deps, peer, id, name, rounds, req.maxRounds, staging, stage))) break;
    } else {
      const predicted = predictFreezeMs(rounds);
      if (predicted !== null && predicted <= max && (await isStagedInTime(deps, peer, id, name, rounds, req.maxRounds, staging, stage))) break;
      if (rounds.length >= req.maxRounds) {
        throw new FreezeTooLongError(
          `Cannot migrate pod "${name}" to "${req.to}" within ${max} ms of freeze: after ${rounds.length} round${rounds.length === 1 ? "" : "s"} the freeze would take about ${predicted ?? "an unknown number of"} ms (the last round's dump and capture, its ${rounds.at(-1)?.bytesSent ?? 0} bytes again, and a restore); the pod runs on here`,
          rounds,
        );
      }
    }
    const tr = performance.now();
    const n = rounds.length + 1;
    await failpoint("migrate.round");
    const release = await req.turns?.round();
    let cp: Awaited<ReturnType<typeof checkpointPod>>;
    let push: TransferReport;
    try {
      cp = await checkpointPod(ctx, name, { leaveRunning: true, excludeVolumes: [], isPrecopyRound: true });
      roundImages.push(cp.id);
      try {
        push = await pushImage(ctx.catalogue, deps.trust, peer, cp.id);
      } catch (e) {
        throw new PreconditionError(`Cannot migrate pod "${name}" to "${req.to}": round ${n} could not be sent: ${errorMessage(e)}; the pod runs on here`, {
          cause: e,
        });
      }
    } finally {
      release?.();
    }
    // The peer makes this round's files while the next round runs: the freeze writes only what changed since.
    // (Awaited before the peer is asked whether its staging is made: else it may answer for the round before.)
    staging = peer
      .migrationStage(id, { pod: name, image: cp.id, source: deps.hostName() })
      .catch((e: unknown) => ctx.log.warn("the peer could not stage a round; its restore writes the files whole", { pod: name, error: errorMessage(e) }));
    const round: RoundReport = {
      round: n,
      pauseMs: cp.freezeMs,
      bytesOffered: push.bytesOffered,
      bytesSent: push.bytesSent,
      wireBytes: push.wireBytes,
      pushMs: push.ms,
      ms: Math.round(performance.now() - tr),
    };
    rounds.push(round);
    onProgress({
      phase: "round",
      round: n,
      bytesSent: push.bytesSent,
      bytesOffered: push.bytesOffered,
      ms: round.ms,
      message: `round ${n}: sent ${push.bytesSent} of ${push.bytesOffered} bytes in ${round.ms} ms (pod paused ${cp.freezeMs} ms)`,
    });
  }
  return rounds;
}

/** A wait for the peer's staging longer than this sends one more round before the freeze (what the pod dirtied meanwhile), once per migration. */
export const STAGE_WAIT_REROUND_MS = 1000;
/** The peer's staging is waited for at most this long in all (it makes a pod's base the first time: seconds to minutes). */
export const STAGE_WAIT_MAX_MS = 300_000;

/**
 * Before the freeze: wait until the peer has made the last round's files (and the pod's base, on a
 * pod's first visit), so that the freeze's restore only patches them. True: freeze now. False: the
 * wait was long, so one more round goes first (unless the rounds are used up, or one went already:
 * on a busy peer every stage is slow, and under load each round paused the pod for seconds). A peer that cannot
 * say, or that stays busy past STAGE_WAIT_MAX_MS, is not waited for (its restore writes the rest).
 */
async function isStagedInTime(
  deps: SourceDeps,
  peer: PeerMigrationClient,
  id: string,
  name: string,
  rounds: readonly RoundReport[],
  maxRounds: number,
  staging: Promise<unknown>,
  stage: { isReRounded: boolean },
): Promise<boolean> {
  if (rounds.length === 0) return true;
  const t0 = performance.now();
  await staging;
  for (;;) {
    let state: string;
    try {
      state = await peer.migrationStaged(id);
    } catch (e) {
      deps.ctx.log.warn("could not ask the peer whether it staged the last round; freezing without waiting", { pod: name, error: errorMessage(e) });
      return true;
    }
    const waitedMs = performance.now() - t0;
    if (state === "pending" && waitedMs < STAGE_WAIT_MAX_MS) continue;
    if (waitedMs > STAGE_WAIT_REROUND_MS)
      deps.ctx.log.info("waited for the peer to stage the last round", { pod: name, state, waited_ms: Math.round(waitedMs) });
    if (waitedMs <= STAGE_WAIT_REROUND_MS || rounds.length >= maxRounds || stage.isReRounded) return true;
    stage.isReRounded = true;
    return false;
  }
}

export interface Handover {
  id: string;
  name: string;
  req: MigrateRequest & { mode: MigrationMode };
  from: string;
  journal: SourceJournal;
  rounds: RoundReport[];
  roundImages: string[];
  t0: number;
  /**
   * The freeze is over (the pod runs on the destination): another migration's freeze may start. Post-copy
   * calls it before its page pull, which may take seconds and shares the link with the next freeze.
   */
  endFreeze?: () => void;
  /** Post-copy: the base's image, sent before the freeze (sendBaseAhead); null when none went. */
  baseAhead?: TransferReport | null;
}

/** The final checkpoint of a handover, claimed and started: the pod is busy and the store's merging held until it ends. */
export async function startFinalCheckpoint(
  ctx: CheckpointContext,
  name: string,
  cpReq: CheckpointRequest,
): Promise<{ run: CheckpointRun; releaseMerging: () => void }> {
  const checked = await checkCheckpoint(ctx, name, cpReq);
  claim(ctx, name);
  const releaseMerging = ctx.store.holdMerging();
  try {
    return { run: startCheckpoint(ctx, name, cpReq, checked, performance.now()), releaseMerging };
  } catch (e) {
    ctx.busy.delete(name);
    releaseMerging();
    throw e;
  }
}

/** The freeze's phases, whole milliseconds, each since the one before (or ending `endedMsAgo` before now); `from` sets where the next starts (the dump's start). */
export function freezeClock(): { phases: Record<string, number>; phase(p: string, endedMsAgo?: number): void; from(t: number): void } {
  const phases: Record<string, number> = {};
  let mark = 0;
  return {
    phases,
    phase: (p, endedMsAgo = 0) => {
      const now = performance.now() - endedMsAgo;
      phases[p] = Math.round(now - mark);
      mark = now;
    },
    from: (t) => {
      mark = t;
    },
  };
}

/** The freeze: dump leaving the tasks stopped, send the delta, the peer restores held, commit, the peer resumes. */
async function freezeAndHandOver(deps: SourceDeps, peer: PeerMigrationClient, h: Handover, onProgress: (p: MigrationProgress) => void): Promise<MigrateReport> {
  const { ctx } = deps;
  const { id, name, req } = h;
  const cpReq: CheckpointRequest = { leaveRunning: false, excludeVolumes: [], isAfterRounds: h.rounds.length > 0 };
  const { run, releaseMerging } = await startFinalCheckpoint(ctx, name, cpReq);
  const { phases, phase, from } = freezeClock();
  let isMigrationCommitted = false;
  let final: TransferReport | null = null;
  let restorePhases: Record<string, number> = {};
  try {
    const writer = ctx.store.writer(`migrate ${name}`);
    try {
      // The base is read-only (the overlay's lower layer, never written): captured while the pod still
      // runs, not in the freeze (walking a Debian root's thousands of files took hundreds of ms).
      const base = await captureBase(ctx, run, writer);
      writeMigrationJournal(ctx.stateDir, { ...h.journal, phase: "frozen", pid: run.target.pid });
      await failpoint("migrate.freezing");
      onProgress({ phase: "freeze", message: `freezing pod "${name}"` });
      const hashing = await dumpStopped(ctx, run);
      from(run.dumpStartedAt);
      phase("dump");
      await failpoint("migrate.frozen");
      const files = await captureFiles(run, writer);
      const images = await captureImages(ctx, run, writer, hashing);
      await commitImage(ctx, run, writer, { ...files, base, ...images });
    } finally {
      writer.close();
    }
    phase("capture");
    const image = run.journal.imageId!;
    // The pod is frozen: a peer gone silent ends the wait in seconds, not at a request's own timeout.
    final = await whileAnswering(peer, pushImage(ctx.catalogue, deps.trust, peer, image));
    phase("delta");
    onProgress({ phase: "delta", bytesSent: final.bytesSent, bytesOffered: final.bytesOffered, message: `delta: sent ${final.bytesSent} bytes` });
    await failpoint("migrate.delta-sent");
    onProgress({ phase: "restore", message: `"${req.to}" restores pod "${name}", held stopped` });
    restorePhases = (
      await whileAnswering(peer, peer.migrationRestore(id, { pod: name, image, source: h.from, rounds: h.roundImages, secret: h.journal.secret }))
    ).phases;
    phase("restore");
    await failpoint("migrate.ready");
    // The decision: from this write on, the destination's copy is the pod.
    writeMigrationJournal(ctx.stateDir, { ...h.journal, phase: "committed", image, pid: run.target.pid });
    isMigrationCommitted = true;
    await failpoint("migrate.committed");
    onProgress({ phase: "commit", message: `committed: pod "${name}" leaves this host` });
    await killOrContinue(ctx, run);
    phase("commit");
  } catch (e) {
    if (isMigrationCommitted) {
      // Only the kill of our stopped copy can fail here: it never runs again (the journal says committed; recovery finishes it).
      ctx.log.error("killing the migrated pod's stopped copy failed", { pod: name, error: errorMessage(e) });
    } else {
      await abortHandover(deps, peer, h, run, e);
    }
  } finally {
    endCheckpointWork(ctx, run, releaseMerging);
  }
  const isResumeConfirmed = await resumeDestination(deps, peer, h.id, h.journal.secret, name);
  phase("resume");
  const freezeMs = Math.round(performance.now() - run.dumpStartedAt);
  onProgress({
    phase: "resume",
    ms: freezeMs,
    message: isResumeConfirmed ? `pod "${name}" runs on "${req.to}" (frozen ${freezeMs} ms)` : `"${req.to}" resumes pod "${name}" once it hears the outcome`,
  });
  await ctx.pods.settled(name);
  await ctx.pods
    .remove(name, true)
    .catch((e: unknown) => ctx.log.warn("could not remove the migrated pod's record here", { pod: name, error: errorMessage(e) }));
  const all = [...h.rounds.map((r) => ({ offered: r.bytesOffered, sent: r.bytesSent })), { offered: final!.bytesOffered, sent: final!.bytesSent }];
  const bytesOffered = all.reduce((s, r) => s + r.offered, 0);
  const bytesSent = all.reduce((s, r) => s + r.sent, 0);
  const report: MigrateReport = {
    id,
    pod: name,
    from: h.from,
    to: req.to,
    mode: req.mode,
    rounds: h.rounds,
    final: { bytesOffered: final!.bytesOffered, bytesSent: final!.bytesSent, wireBytes: final!.wireBytes },
    freezeMs,
    predictedFreezeMs: predictFreezeMs(h.rounds),
    freezePhases: phases,
    restorePhases,
    capturePhases: run.phase.all,
    totalMs: Math.round(performance.now() - h.t0),
    bytesOffered,
    bytesSent,
    bytesSavedByDedup: bytesOffered - bytesSent,
    isResumeConfirmed,
    pages: null,
  };
  onProgress({ phase: "done", ms: report.totalMs, message: `migrated pod "${name}" to "${req.to}" in ${report.totalMs} ms` });
  ctx.log.info("migrated pod", { pod: name, to: req.to, freeze_ms: freezeMs, total_ms: report.totalMs, rounds: h.rounds.length });
  return report;
}

/** While the peer restores, how often it is asked whether it answers at all, and how many unanswered asks in a row end the wait. */
export const PROBE_EVERY_MS = 5000;
export const PROBES_MISSED = 3;

/**
 * `work`'s answer, unless the peer stops answering meanwhile: the final delta and a held restore may take
 * minutes (a big pod, a slow link, a busy disk), but a cut link would otherwise keep the pod frozen here
 * until a request's own timeout (the push's stall watch, the restore's 10 minutes).
 * Giving up before the commit is safe: the peer asks for the outcome and drops its copy.
 */
export async function whileAnswering<T>(peer: PeerMigrationClient, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let isDone = false;
  const silent = new Promise<never>((_, reject) => {
    let missed = 0;
    const probe = () => {
      timer = setTimeout(async () => {
        const isUp = await peer.health().catch(() => false);
        if (isDone) return;
        missed = isUp ? 0 : missed + 1;
        if (missed >= PROBES_MISSED) {
          reject(new UnavailableError(`"${peer.name}" stopped answering while the pod was frozen (${missed} health checks in a row unanswered)`));
        } else probe();
      }, PROBE_EVERY_MS);
    };
    probe();
  });
  work.catch(() => undefined); // its failure after a give-up is nobody's
  try {
    return await Promise.race([work, silent]);
  } finally {
    isDone = true;
    clearTimeout(timer);
  }
}

/** Before the commit: the source's copy runs on, the peer drops whatever it holds. Throws the reason. */
export async function abortHandover(deps: SourceDeps, peer: PeerMigrationClient, h: Handover, run: CheckpointRun, e: unknown): Promise<never> {
  const { ctx } = deps;
  // No journal: asked, the answer is "aborted" from now on.
  removeMigrationJournal(ctx.stateDir, h.id);
  if (!run.isCommitted) {
    await undoCheckpoint(ctx, run, e).catch(() => undefined);
  } else {
    const connections = run.isStopped ? ctx.host.continueTree(run.target.pid) : [];
    run.isStopped = false;
    await unlockAll(ctx.host, run.target.netnsPath);
    ctx.host.nudgePeers(run.target.netnsPath, connections);
    ctx.pods.endCheckpoint(h.name, "running");
  }
  // The peer may have announced the address for its held copy.
  await ctx.pods.announce(h.name).catch(() => undefined);
  await peer
    .migrationAbort(h.id, h.journal.secret)
    .catch((x: unknown) => ctx.log.warn("could not tell the peer the migration was aborted; it will ask", { error: errorMessage(x) }));
  ctx.log.warn("migration aborted; the pod runs on here", { pod: h.name, to: h.req.to, error: errorMessage(e) });
  throw new PreconditionError(`Cannot migrate pod "${h.name}" to "${h.req.to}": ${errorMessage(e)}; the pod runs on here`, { cause: e });
}

/** After the commit: tell the peer to run its copy. False when it cannot be told now: it asks us, and we keep telling it (finishCommitted). */
export async function resumeDestination(deps: SourceDeps, peer: PeerMigrationClient, id: string, secret: string, name: string): Promise<boolean> {
  try {
    await failpoint("migrate.resuming");
    await peer.migrationResume(id, secret);
  } catch (e) {
    if (!(e instanceof NotFoundError)) {
      deps.ctx.log.warn("the destination did not confirm it resumed the pod; it will ask for the outcome", { pod: name, id, error: errorMessage(e) });
      retryResume(deps, peer, id, secret, name);
      return false;
    }
  }
  removeMigrationJournal(deps.ctx.stateDir, id);
  return true;
}

/** Keep telling the peer until it answers: its copy is the pod, and our journal stays until it knows. */
export function retryResume(deps: SourceDeps, peer: PeerMigrationClient, id: string, secret: string, name: string): void {
  const again = () =>
    setTimeout(async () => {
      try {
        await peer.migrationResume(id, secret);
      } catch (e) {
        if (!(e instanceof NotFoundError)) return again();
      }
      removeMigrationJournal(deps.ctx.stateDir, id);
      deps.ctx.log.info("the destination confirmed it runs the migrated pod", { pod: name, id });
    }, 2000);
  again();
}
