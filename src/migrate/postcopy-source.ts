/**
 * The source side of a post-copy migration's freeze (see index.ts for the
 * state machine): `criu dump --lazy-pages` writes the images without the
 * pod's memory and serves the pages through the page link (page-link.ts),
 * the tasks stopped meanwhile; the destination restores at once and runs its
 * copy while the pages arrive; only when it says every page arrived does the
 * source commit and kill its stopped copy. Any failure before that: the
 * destination kills its copy, the source's continues.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  type CheckpointRequest,
  captureBase,
  captureFiles,
  captureImages,
  commitBaseImage,
  commitImage,
  dumpStopped,
  endCheckpointWork,
  killOrContinue,
} from "../checkpoint/checkpoint.ts";
import { failpoint } from "../debug/failpoints.ts";
import { errorMessage, PreconditionError } from "../errors.ts";
import type { LazyCriu } from "../platform/checkpoint-host.ts";
import { pushImage, type TransferReport } from "../transfer/push.ts";
import { writeMigrationJournal } from "./journal.ts";
import { listenForCriu, PageBridge } from "./page-link.ts";
import { type PeerMigrationClient, runningBeforeAnswerMs } from "./peer.ts";
import {
  abortHandover,
  freezeClock,
  type Handover,
  type MigrateReport,
  type MigrationProgress,
  resumeDestination,
  type SourceDeps,
  startFinalCheckpoint,
  whileAnswering,
} from "./source.ts";

/**
 * How long the source's page link may hear nothing before it gives up and runs its own copy. Longer
 * than the destination's (DEST_SILENT_MS plus its ASK_AFTER_MS): on a cut link the destination has
 * killed or stopped its copy by then.
 */
export const SOURCE_SILENT_MS = 12_000;
/** How long the dump's CRIU may take to end once the link is closed, before it is killed. */
const CRIU_END_MS = 10_000;
/** How often the page pull's progress is told. */
const PROGRESS_EVERY_MS = 500;

async function endCriu(c: LazyCriu | null): Promise<void> {
  if (!c) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    c.done.then(
      () => true,
      () => true,
    ),
    new Promise<false>((r) => {
      timer = setTimeout(() => r(false), CRIU_END_MS);
    }),
  ]);
  clearTimeout(timer);
  if (!ended) {
    c.kill();
    await c.done.catch(() => undefined);
  }
}

/** How long the destination's copy of the base sent ahead is waited for before the freeze (then its restore makes the copy). */
export const BASE_STAGE_WAIT_MAX_MS = 60_000;

/**
 * Before a post-copy freeze that no pre-copy round went before, while the pod runs: its base (an
 * overlay pod's read-only root) goes ahead as an image of its own, and the destination makes its copy
 * of it (a stage, as of a round). Else the freeze would capture it, carry it and the destination copy
 * it (on a first visit, hundreds of milliseconds of a 1 GiB pod's post-copy freeze). The image is one of
 * the migration's rounds' (`roundImages`): removed on both hosts when the migration ends. Null: the
 * pod has no separate base. A failed push throws (nothing frozen); a failed stage only costs time.
 */
export async function sendBaseAhead(
  deps: SourceDeps,
  peer: PeerMigrationClient,
  id: string,
  name: string,
  to: string,
  roundImages: string[],
  onProgress: (p: MigrationProgress) => void,
): Promise<TransferReport | null> {
  const { ctx } = deps;
  const image = await commitBaseImage(ctx, name);
  if (image === null) return null;
  roundImages.push(image);
  let push: TransferReport;
  try {
    push = await pushImage(ctx.catalogue, deps.trust, peer, image);
  } catch (e) {
    throw new PreconditionError(`Cannot migrate pod "${name}" to "${to}": its base could not be sent: ${errorMessage(e)}; the pod runs on here`, { cause: e });
  }
  onProgress({
    phase: "round",
    bytesSent: push.bytesSent,
    bytesOffered: push.bytesOffered,
    message: `base: sent ${push.bytesSent} of ${push.bytesOffered} bytes ahead`,
  });
  const t0 = performance.now();
  try {
    await peer.migrationStage(id, { pod: name, image, source: deps.hostName() });
    let state = await peer.migrationStaged(id);
    while (state === "pending" && performance.now() - t0 < BASE_STAGE_WAIT_MAX_MS) state = await peer.migrationStaged(id);
    if (state !== "made") ctx.log.warn("the peer did not make its copy of the base ahead; its restore makes it", { pod: name, state });
  } catch (e) {
    ctx.log.warn("the peer could not make its copy of the base ahead; its restore makes it", { pod: name, error: errorMessage(e) });
  }
  ctx.log.info("sent the base ahead of a post-copy freeze", {
    pod: name,
    bytes: push.bytesSent,
    push_ms: push.ms,
    stage_ms: Math.round(performance.now() - t0),
  });
  return push;
}

/** The post-copy freeze: dump without the memory, push, the destination runs its copy and pulls the pages, commit. */
export async function freezeAndHandOverPostcopy(
  deps: SourceDeps,
  peer: PeerMigrationClient,
  h: Handover,
  onProgress: (p: MigrationProgress) => void,
): Promise<MigrateReport> {
  const { ctx } = deps;
  const { id, name, req } = h;
  const cpReq: CheckpointRequest = { leaveRunning: false, excludeVolumes: [] };
  const { run, releaseMerging } = await startFinalCheckpoint(ctx, name, cpReq);
  const { phases, phase, from } = freezeClock();
  let criu: LazyCriu | null = null;
  let settle: { done(): void; failed(e: Error): void } = { done: () => {}, failed: () => {} };
  const outcome = new Promise<void>((resolve, reject) => {
    settle = { done: resolve, failed: reject };
  });
  outcome.catch(() => undefined);
  const bridge = new PageBridge(SOURCE_SILENT_MS, {
    onDone: () => settle.done(),
    onFailed: (why) => settle.failed(why),
  });
  const socketPath = join(run.tmp, "pages.sock");
  const criuSide = listenForCriu(socketPath, bridge);
  const link = deps.peers.listenPageLink({ peer: req.to, id, secret: h.journal.secret }, bridge, (why) =>
    ctx.log.warn("refused a page link connection", { pod: name, id, why }),
  );
  let isMigrationCommitted = false;
  let final: TransferReport | null = null;
  let restorePhases: Record<string, number> = {};
  let freezeMs = 0;
  let pagesStartedAt = 0;
  let pagesMs = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const writer = ctx.store.writer(`migrate ${name}`);
  try {
    try {
      // The base is read-only: captured while the pod still runs, not in the freeze (sent ahead
      // already, sendBaseAhead, its capture is reused here unchanged).
      const base = await captureBase(ctx, run, writer);
      writeMigrationJournal(ctx.stateDir, { ...h.journal, phase: "frozen", pid: run.target.pid });
      await failpoint("migrate.freezing");
      onProgress({ phase: "freeze", message: `freezing pod "${name}" (post-copy: its memory stays here until pulled)` });
      const hashing = await dumpStopped(ctx, run, {
        pageSocket: socketPath,
        onCriu: (c) => {
          criu = c;
          // A failed dump ends the migration. A good end is the destination's daemon closing its session,
          // which comes just before its word that every page arrived (or, on its failure, the link closing).
          c.done.catch((e: unknown) => settle.failed(e instanceof Error ? e : new Error(String(e))));
        },
      });
      criuSide.stop();
      from(run.dumpStartedAt);
      phase("dump");
      await failpoint("migrate.frozen");
      const files = await captureFiles(run, writer);
      const images = await captureImages(ctx, run, writer, hashing);
      await commitImage(ctx, run, writer, { ...files, base, ...images });
      writer.close();
      phase("capture");
      const image = run.journal.imageId!;
      final = await whileAnswering(peer, pushImage(ctx.catalogue, deps.trust, peer, image));
      phase("delta");
      onProgress({ phase: "delta", bytesSent: final.bytesSent, bytesOffered: final.bytesOffered, message: `delta: sent ${final.bytesSent} bytes` });
      await failpoint("migrate.delta-sent");
      // From here the destination may run a copy: ours stays stopped until it has every page.
      writeMigrationJournal(ctx.stateDir, { ...h.journal, phase: "postcopy", image, pid: run.target.pid });
      onProgress({ phase: "restore", message: `"${req.to}" restores pod "${name}" and runs it; its memory follows` });
      const restoring = peer.migrationRestore(id, {
        pod: name,
        image,
        source: h.from,
        rounds: h.roundImages,
        secret: h.journal.secret,
        pages: { port: link.port },
      });
      restorePhases = (await whileAnswering(peer, Promise.race([restoring, outcome.then(() => restoring)]))).phases;
      // The freeze ends when the copy there runs, not when its answer arrives here (it adopts and announces it first).
      const ranFor = Math.min(runningBeforeAnswerMs(restorePhases), performance.now() - run.dumpStartedAt);
      phase("restore", ranFor);
      freezeMs = Math.round(performance.now() - ranFor - run.dumpStartedAt);
      // The next pod of an evacuation may freeze while this one's pages are pulled.
      h.endFreeze?.();
      pagesStartedAt = performance.now();
      onProgress({ phase: "resume", ms: freezeMs, message: `pod "${name}" runs on "${req.to}" (frozen ${freezeMs} ms); pulling its memory` });
      ticker = setInterval(() => {
        onProgress({
          phase: "pages",
          bytesSent: bridge.bytesOut,
          ms: Math.round(performance.now() - pagesStartedAt),
          message: `pages: ${bridge.bytesOut} bytes pulled`,
        });
      }, PROGRESS_EVERY_MS);
      await failpoint("migrate.pulling");
      await outcome;
      pagesMs = Math.round(performance.now() - pagesStartedAt);
      clearInterval(ticker);
      // Not part of the freeze (the pod ran meanwhile), but where the time went.
      phase("pages");
      // The decision: every page is there; from this write on, the destination's copy is the pod.
      writeMigrationJournal(ctx.stateDir, { ...h.journal, phase: "committed", image, pid: run.target.pid });
      isMigrationCommitted = true;
      bridge.sendCommitted();
      await failpoint("migrate.committed");
      onProgress({ phase: "commit", message: `committed: every page arrived; pod "${name}" leaves this host` });
      await endCriu(criu);
      await killOrContinue(ctx, run);
      phase("commit");
    } catch (e) {
      clearInterval(ticker);
      if (isMigrationCommitted) {
        ctx.log.error("killing the migrated pod's stopped copy failed", { pod: name, error: errorMessage(e) });
      } else {
        // The destination kills its copy when the link goes (and when told): ours runs on once CRIU lets go of it.
        bridge.close();
        await endCriu(criu);
        await abortHandover(deps, peer, h, run, e);
      }
    }
  } finally {
    writer.close();
    clearInterval(ticker);
    bridge.close();
    link.stop();
    criuSide.stop();
    rmSync(socketPath, { force: true });
    endCheckpointWork(ctx, run, releaseMerging);
  }
  const isResumeConfirmed = await resumeDestination(deps, peer, h.id, h.journal.secret, name);
  await ctx.pods.settled(name);
  await ctx.pods
    .remove(name, true)
    .catch((e: unknown) => ctx.log.warn("could not remove the migrated pod's record here", { pod: name, error: errorMessage(e) }));
  const bytesOffered = final!.bytesOffered + (h.baseAhead?.bytesOffered ?? 0);
  const bytesSent = final!.bytesSent + (h.baseAhead?.bytesSent ?? 0);
  const report: MigrateReport = {
    id,
    pod: name,
    from: h.from,
    to: req.to,
    mode: req.mode,
    rounds: h.rounds,
    final: { bytesOffered: final!.bytesOffered, bytesSent: final!.bytesSent, wireBytes: final!.wireBytes },
    freezeMs,
    predictedFreezeMs: null,
    freezePhases: phases,
    restorePhases,
    capturePhases: run.phase.all,
    totalMs: Math.round(performance.now() - h.t0),
    bytesOffered,
    bytesSent,
    bytesSavedByDedup: bytesOffered - bytesSent,
    isResumeConfirmed,
    pages: { bytes: bridge.bytesOut, ms: pagesMs },
  };
  onProgress({ phase: "done", ms: report.totalMs, message: `migrated pod "${name}" to "${req.to}" in ${report.totalMs} ms (frozen ${freezeMs} ms)` });
  ctx.log.info("migrated pod (post-copy)", {
    pod: name,
    to: req.to,
    freeze_ms: freezeMs,
    pages_ms: pagesMs,
    pages_bytes: bridge.bytesOut,
    total_ms: report.totalMs,
  });
  return report;
}
