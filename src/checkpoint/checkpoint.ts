/**
 * Checkpoint of a pod, as named steps: check, start (claim, journal), dump
 * (the tasks left stopped), capture files (layer, volumes), continue (only
 * --leave-running), capture base, capture images (CRIU's files), commit, and
 * kill or continue; undo on any failure before the commit. The orchestration
 * is checkpointPod; a migration reuses the steps.
 *
 * Zero data loss: a checkpoint leaves the pod's tasks stopped (`criu dump
 * --leave-stopped`) until the image is committed. Only then are they killed
 * (stop) or continued (--leave-running). Any failure before that continues
 * them, so the pod keeps running. A journal file per checkpoint lets a
 * restarted agent finish or undo one that was interrupted (recovery.ts).
 */
import { failpoint } from "../debug/failpoints.ts";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { AutopodError, ConflictError, errorMessage, InvalidArgumentError, PreconditionError } from "../errors.ts";
import { childPath } from "../pods/child-path.ts";
import { formatBytes } from "../format.ts";
import type { FileHashes } from "../store/chunk-workers.ts";
import type { LazyCriu } from "../platform/checkpoint-host.ts";
import type { ChunkWriter } from "../store/chunk-store.ts";
import { externalMountsOf, type PodRecord, type PodSpec } from "../pods/pod.ts";
import type { PodRuntime } from "../pods/runtime.ts";
import { VERSION } from "../version.ts";
import { type CheckpointContext, claim, unlockAll } from "./_context.ts";
import { requireCriu } from "./host-compat.ts";
import { type Journal, removeJournal, writeJournal } from "./journal.ts";
import { podSpecForManifest } from "./manifest-pod.ts";
import type { OnProgress } from "../progress.ts";
import { ProgressTicker } from "./_progress-ticker.ts";
import { FORMAT_VERSION, type FileEntry, logicalBytes, type Manifest, encodeManifest, imageIdOf } from "../image/manifest.ts";
import { PageTail } from "./page-tail.ts";
import { recoverCheckpoint } from "./recovery.ts";
import { type PhaseClock, phaseClock, round } from "./phase-clock.ts";
import { writableLayerOf } from "./placement.ts";
import { captureTree } from "./tree.ts";

export interface CheckpointRequest {
  leaveRunning: boolean;
  /** Volume mount points (in the pod) not to include: volumes on shared storage. */
  excludeVolumes: string[];
  /** Kill processes started with `autopod exec` instead of refusing: CRIU dumps only the pod's own tree. */
  killExec?: boolean;
  /**
   * A migration's pre-copy round (with leaveRunning): CRIU itself resumes the tasks
   * (`--leave-running`), so their TCP sockets leave repair mode; the files are captured
   * after, while the pod runs, so the image is only a source of chunks, never restored.
   */
  isPrecopyRound?: boolean;
  /**
   * A migration's freeze after pre-copy rounds: most pages are stored already, so the page
   * images are hashed as CRIU writes them but not written ahead to disk (PageTail).
   */
  isAfterRounds?: boolean;
}

export interface CheckpointResult {
  id: string;
  pod: string;
  parent: string | null;
  leftRunning: boolean;
  /** How long the pod's processes were stopped (for --leave-running: its whole pause). */
  freezeMs: number;
  dumpMs: number;
  captureMs: number;
  totalMs: number;
  logicalBytes: number;
  newBytes: number;
  newChunks: number;
  /** Where the time went, in order: prepare, dump, files (layer, volumes), base, images (CRIU's files), commit, stop (or continue). */
  phases: Record<string, number>;
  /** Page images hashed while CRIU wrote them (PageTail): how many, and the bytes hashed before CRIU exited; null when not tailed (--leave-running). */
  pageTail: { files: number; bytesDuringDump: number } | null;
}

/** What checkCheckpoint found: the pod can be checkpointed, with these. */
export interface CheckedCheckpoint {
  criu: { path: string; version: string };
  target: ReturnType<PodRuntime["target"]>;
  /** The volumes that travel in the image. */
  included: PodSpec["volumes"];
}

/** One checkpoint as it goes: what each step reads, and leaves for the next. */
export interface CheckpointRun extends CheckedCheckpoint {
  name: string;
  req: CheckpointRequest;
  tmp: string;
  imagesDir: string;
  journal: Journal;
  phase: PhaseClock;
  /** The pod's tasks are stopped by the dump, and not yet continued or killed. */
  isStopped: boolean;
  /** The image is in the catalogue: from here on the checkpoint finishes, it is never undone. */
  isCommitted: boolean;
  /** When the dump began (performance.now()), and how long it took. */
  dumpStartedAt: number;
  dumpMs: number;
  /** When the dump's answer was in (performance.now()): capture time counts from here. */
  dumpEndedAt: number;
  freezeMs: number;
  pageTail: { files: number; bytesDuringDump: number } | null;
  /** Where the steps say how far they got (checkpointPod's; absent for other callers). */
  progress?: ProgressTicker;
  /** The page images hashed as CRIU wrote them (PageTail): bytes hashed so far, of their size; absent when not tailed. */
  pages?: { hashedBytes: () => number; totalBytes: number };
}

/** The parts of an image captured while the pod's tasks were stopped (files) and after (base, CRIU's files). */
export interface CapturedParts {
  layer: FileEntry[];
  volumeTrees: Array<{ path: string; entries: FileEntry[] }>;
  base: FileEntry[] | undefined;
  images: FileEntry[];
  parentId: string | null;
}

/** Checkpoint pod `name`; with `onProgress`, tell how far it got (phases, bytes hashed and stored) as it goes. */
export async function checkpointPod(ctx: CheckpointContext, name: string, req: CheckpointRequest, onProgress?: OnProgress): Promise<CheckpointResult> {
  const { store, log } = ctx;
  const t0 = performance.now();
  const checked = await checkCheckpoint(ctx, name, req);
  claim(ctx, name);
  // The index merge of an earlier checkpoint waits: this one wants both cores.
  const releaseMerging = store.holdMerging();
  let run: CheckpointRun;
  try {
    run = startCheckpoint(ctx, name, req, checked, t0);
  } catch (e) {
    // Refused by the pod's state (it is being stopped): nothing may stay held.
    ctx.busy.delete(name);
    releaseMerging();
    throw e;
  }
  const progress = new ProgressTicker(onProgress);
  run.progress = progress;
  try {
    await failpoint("checkpoint.started");
    const hashing = await dumpStopped(ctx, run);
    await failpoint("checkpoint.dumped");
    const writer = store.writer(`checkpoint ${name}`);
    let manifest: Manifest;
    try {
      // Files first, while the tasks are stopped: they must match the memory image exactly.
      progress.phase("storing files", () => writer.newBytes);
      const files = await captureFiles(run, writer);
      await failpoint("checkpoint.files-stored");
      if (req.leaveRunning && !req.isPrecopyRound) await continueLeftRunning(ctx, run);
      const base = await captureBase(ctx, run, writer);
      const storedBefore = writer.newBytes;
      // Pages hashed as CRIU wrote them are hashed to their end now: that count of the page images' size;
      // else (left running) the new bytes stored.
      if (run.pages) progress.phase("storing memory", run.pages.hashedBytes, run.pages.totalBytes);
      else progress.phase("storing memory", () => writer.newBytes - storedBefore);
      const images = await captureImages(ctx, run, writer, hashing);
      progress.phase("committing");
      await failpoint("checkpoint.images-stored");
      manifest = await commitImage(ctx, run, writer, { ...files, base, ...images });
      await failpoint("checkpoint.committed");
    } finally {
      writer.close();
    }
    const newBytes = writer.newBytes;
    const newChunks = writer.newChunks;
    await killOrContinue(ctx, run);
    const total = performance.now() - t0;
    const result: CheckpointResult = {
      id: run.journal.imageId!,
      pod: name,
      parent: manifest.parent,
      leftRunning: req.leaveRunning,
      freezeMs: round(run.freezeMs),
      dumpMs: round(run.dumpMs),
      captureMs: round(performance.now() - run.dumpEndedAt),
      totalMs: round(total),
      logicalBytes: logicalBytes(manifest),
      newBytes,
      newChunks,
      phases: run.phase.all,
      pageTail: run.pageTail,
    };
    log.info("checkpointed pod", { ...result });
    return result;
  } catch (e) {
    if (!run.isCommitted) await undoCheckpoint(ctx, run, e);
    await finishCommitted(ctx, run, e);
    throw new AutopodError(
      "internal",
      `Checkpoint of pod "${name}" failed after its image ${run.journal.imageId} was committed: ${errorMessage(e)}; the pod is ${ctx.pods.get(name).state}`,
      { cause: e },
    );
  } finally {
    progress.stop();
    endCheckpointWork(ctx, run, releaseMerging);
  }
}

/** Refuse, before anything changes, a checkpoint that cannot be made: no CRIU, no such pod or volume, a file volume, no room. */
export async function checkCheckpoint(ctx: CheckpointContext, name: string, req: CheckpointRequest): Promise<CheckedCheckpoint> {
  const { pods } = ctx;
  const criu = await requireCriu(ctx.host, ctx.criu);
  const target = pods.target(name);
  const r = target.record;
  const volumes = r.spec.volumes;
  for (const ex of req.excludeVolumes) {
    if (!volumes.some((v) => v.pod === ex)) {
      throw new InvalidArgumentError(`Pod "${name}" has no volume at "${ex}" (its volumes: ${volumes.map((v) => v.pod).join(", ") || "none"})`);
    }
  }
  const included = volumes.filter((v) => !req.excludeVolumes.includes(v.pod));
  for (const v of included) {
    if (!statSync(v.host).isDirectory()) {
      throw new PreconditionError(
        `Volume "${v.pod}" of pod "${name}" is a file (${v.host}); only directories can travel in an image: exclude it with --exclude-volume ${v.pod}`,
      );
    }
  }
  checkFreeSpace(ctx, r, "checkpoint");
  checkExecSessions(ctx, name, target.pid, req.killExec ?? false);
  checkDumpable(ctx, name, target.pid);
  return { criu, target, included };
}

/** The pod's temporary directory and journal, and its state "checkpointing". */
export function startCheckpoint(ctx: CheckpointContext, name: string, req: CheckpointRequest, checked: CheckedCheckpoint, t0: number): CheckpointRun {
  const tmp = mkdtempSync(childPath(ctx.stateDir, "tmp", `checkpoint-${name}-`));
  const journal: Journal = { kind: "checkpoint", pod: name, tmp, pid: checked.target.pid, criuPid: null, imageId: null, leaveRunning: req.leaveRunning };
  try {
    ctx.pods.beginCheckpoint(name);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  writeJournal(ctx.stateDir, journal);
  return {
    ...checked,
    name,
    req,
    tmp,
    imagesDir: join(tmp, "criu"),
    journal,
    phase: phaseClock(t0),
    isStopped: false,
    isCommitted: false,
    dumpStartedAt: 0,
    dumpMs: 0,
    dumpEndedAt: 0,
    freezeMs: 0,
    pageTail: null,
  };
}

/** `criu dump --leave-stopped`: the pod's tasks stay stopped; its pages hashed as CRIU writes them (when it stops). */
export async function dumpStopped(
  ctx: CheckpointContext,
  run: CheckpointRun,
  /** Post-copy: `criu dump --lazy-pages` serving the pages it left out on this socket; resolves once its images are written, CRIU serving on. */
  lazy?: { pageSocket: string; onCriu(c: LazyCriu): void },
): Promise<Map<string, Promise<FileHashes>>> {
  const { host, log } = ctx;
  const { target, req, imagesDir, journal, phase } = run;
  mkdirSync(imagesDir);
  // A pod that stops stays cut off from its peers from the dump until it is restored:
  // CRIU lifts its own lock when it leaves the tasks stopped, and anything the pod's
  // kernel acknowledged after the dump would be missing from the image.
  if (!req.leaveRunning) {
    await host.lockNetwork(target.netnsPath);
    log.debug("network locked for the dump", { pod: run.name });
  }
  // A stopping pod's pages are hashed as CRIU writes them (a pod left running has its pages hashed after it goes on).
  const tail = new PageTail(imagesDir, { isOn: !req.leaveRunning && ctx.isPageTailOn !== false, isWriteBehindOn: req.isAfterRounds !== true });
  run.progress?.phase("dumping", () => tail.hashedBytes);
  const dumpOptions = {
    criu: run.criu.path,
    pid: target.pid,
    imagesDir,
    netnsInode: target.netnsInode,
    externalMounts: externalMountsOf(target.record.runtime),
    isNetworkLocked: !req.leaveRunning,
    onSpawn: (pid: number) => {
      writeJournal(ctx.stateDir, { ...journal, criuPid: pid });
      failpoint("checkpoint.criu-started");
    },
  };
  const dumping = lazy
    ? (async () => {
        const t0 = performance.now();
        const c = host.dumpLazy({ ...dumpOptions, pageSocket: lazy.pageSocket });
        lazy.onCriu(c);
        await c.ready;
        return { durationMs: performance.now() - t0 };
      })()
    : host.dump({ ...dumpOptions, leave: req.isPrecopyRound ? "running" : "stopped" });
  const dump = await dumping.catch((e) => {
    tail.abort();
    throw e;
  });
  const pageTail = tail.isOn ? { files: 0, bytesDuringDump: tail.hashedBytes } : null;
  log.debug("dump done", { pod: run.name, dumpMs: round(dump.durationMs), pagesHashedDuringDump: pageTail?.bytesDuringDump });
  const hashing = tail.finish();
  if (pageTail) {
    pageTail.files = hashing.size;
    run.pages = { hashedBytes: () => tail.hashedBytes, totalBytes: pageImageBytes(imagesDir, hashing.keys()) };
  }
  run.pageTail = pageTail;
  run.isStopped = !req.isPrecopyRound;
  if (req.isPrecopyRound) run.freezeMs = dump.durationMs;
  phase("prepare", dump.durationMs);
  phase("dump");
  run.dumpMs = dump.durationMs;
  run.dumpEndedAt = performance.now();
  run.dumpStartedAt = run.dumpEndedAt - dump.durationMs;
  return hashing;
}

/** The pod's writable layer and included volumes, while its tasks are stopped. */
export async function captureFiles(run: CheckpointRun, writer: ChunkWriter): Promise<Pick<CapturedParts, "layer" | "volumeTrees">> {
  const layer = await captureTree(writableLayerOf(run.target.record.runtime), writer);
  const volumeTrees = [];
  for (const v of run.included) volumeTrees.push({ path: v.pod, entries: (await captureTree(v.host, writer)).entries });
  run.phase("files");
  return { layer: layer.entries, volumeTrees };
}

/**
 * --leave-running: the files are captured, the pod goes on while the rest is stored. CRIU
 * leaves its network lock in place after --leave-stopped (and the TCP sockets in repair
 * mode, which continueTree lifts): without removing it the pod's connections stall.
 */
export async function continueLeftRunning(ctx: CheckpointContext, run: CheckpointRun): Promise<void> {
  await ctx.host.removeCriuLock(run.target.netnsPath);
  ctx.host.nudgePeers(run.target.netnsPath, ctx.host.continueTree(run.target.pid));
  run.isStopped = false;
  run.freezeMs = performance.now() - run.dumpStartedAt;
}

/** The base root file system of an overlay pod (read-only: a capture of it unchanged since the last is reused). */
export async function captureBase(ctx: CheckpointContext, run: CheckpointRun, writer: ChunkWriter): Promise<FileEntry[] | undefined> {
  const r = run.target.record;
  let base: FileEntry[] | undefined;
  if (r.runtime.rootKind === "overlay") {
    // The base is read-only: unchanged since its last capture (and its chunks still stored), that is reused.
    const cap = await captureTree(r.spec.rootfs, writer, { unchanged: ctx.baseCaptures.get(r.spec.rootfs) });
    ctx.baseCaptures.set(r.spec.rootfs, { fingerprint: cap.fingerprint, entries: cap.entries });
    base = cap.entries;
  }
  run.phase("base");
  return base;
}

/** CRIU's image files, against the pod's previous image. */
export async function captureImages(
  ctx: CheckpointContext,
  run: CheckpointRun,
  writer: ChunkWriter,
  hashing: Map<string, Promise<FileHashes>>,
): Promise<Pick<CapturedParts, "images" | "parentId">> {
  const { catalogue } = ctx;
  // CRIU's files never change again: big ones become packs as they are (adopt), and pages
  // equal to the same pages of the previous image are known stored without asking.
  const parentId = latestImageOf(ctx, run.name);
  const previous = parentId ? { entries: criuEntriesOf(ctx, parentId), isStored: () => catalogue.has(parentId) } : undefined;
  const images = await captureTree(run.imagesDir, writer, { isExcluded: (p) => p === "dump.log", hashing, adopt: true, previous });
  run.phase("images");
  return { images: images.entries, parentId };
}

/** The manifest into the catalogue (durable): from here on the checkpoint is never undone. */
export async function commitImage(ctx: CheckpointContext, run: CheckpointRun, writer: ChunkWriter, parts: CapturedParts): Promise<Manifest> {
  const { journal } = run;
  const manifest = manifestOf(ctx, run.target.record, run.criu.version, parts);
  journal.imageId = await addSigned(ctx, manifest, writer);
  run.isCommitted = true;
  run.phase("commit");
  writeJournal(ctx.stateDir, journal);
  return manifest;
}

function manifestOf(ctx: CheckpointContext, record: PodRecord, criuVersion: string, parts: CapturedParts): Manifest {
  const { host } = ctx;
  return {
    format: FORMAT_VERSION,
    autopodVersion: VERSION,
    criuVersion,
    kernelRelease: host.kernelRelease(),
    // What the pod's processes may use (its CPU baseline), or for a pod from before that was recorded, the host's.
    cpuFlags: record.spec.cpu?.features ?? host.cpuFlags(),
    createdAt: new Date().toISOString(),
    parent: parts.parentId,
    pod: podSpecForManifest(record),
    criu: parts.images,
    rootfs: parts.layer,
    ...(parts.base ? { base: parts.base } : {}),
    volumes: parts.volumeTrees,
  };
}

/** Signed as this host's own before it commits, and committed with its signature (one transaction): the image's id. */
async function addSigned(ctx: CheckpointContext, manifest: Manifest, writer: ChunkWriter): Promise<string> {
  const manifestBytes = encodeManifest(manifest);
  const id = imageIdOf(manifestBytes);
  const signature = await ctx.trust.signLocal(id);
  return ctx.catalogue.addEncoded(manifestBytes, manifest, writer, () => ctx.trust.recordLocal(id, signature));
}

/**
 * An image of a running overlay pod's base alone (its read-only lower layer; nothing of its
 * processes or writable layer), for a migration to send ahead while the pod runs: then neither
 * the base's capture, its transfer nor the destination's copy of it falls in the freeze. Its
 * id; null for a pod whose root is not an overlay (no separate base).
 */
export async function commitBaseImage(ctx: CheckpointContext, name: string): Promise<string | null> {
  const record = ctx.pods.record(name);
  if (record.runtime.rootKind !== "overlay") return null;
  const criu = await requireCriu(ctx.host, ctx.criu);
  const writer = ctx.store.writer(`base of ${name}`);
  try {
    // The same capture the freeze's captureBase then reuses (unchanged: not read again).
    const cap = await captureTree(record.spec.rootfs, writer, { unchanged: ctx.baseCaptures.get(record.spec.rootfs) });
    ctx.baseCaptures.set(record.spec.rootfs, { fingerprint: cap.fingerprint, entries: cap.entries });
    const parts: CapturedParts = { layer: [], volumeTrees: [], base: cap.entries, images: [], parentId: null };
    return await addSigned(ctx, manifestOf(ctx, record, criu.version, parts), writer);
  } finally {
    writer.close();
  }
}

/** After the commit: a stopping pod's tasks are killed (its network still locked), a --leave-running pod's checkpoint ends. */
export async function killOrContinue(ctx: CheckpointContext, run: CheckpointRun): Promise<void> {
  const { pods, host } = ctx;
  const { name, target, req } = run;
  // CRIU's files are in the store now (big ones adopted, and synced). Delete them before the pod
  // goes: the last process of a pod unmounts its overlay, which syncs the whole file system, and
  // a dump's dirty pages deleted first are never written at all.
  rmSync(run.imagesDir, { recursive: true, force: true });
  if (req.leaveRunning) {
    pods.endCheckpoint(name, "running");
  } else {
    // The network is still locked: the kill sends no RST to the pod's peers. The tasks are
    // stopped and never run again; their memory is freed, and the pod's network and cgroup
    // released, after the answer (restore and rm of the pod wait for that).
    host.killTree(target.pid);
    await failpoint("checkpoint.pod-killed");
    pods.endCheckpoint(name, "checkpointed");
    pods.releaseWhenGone(name, target.pid);
    await failpoint("checkpoint.ended");
    run.freezeMs = performance.now() - run.dumpStartedAt;
  }
  run.phase(req.leaveRunning ? "continue" : "stop");
}

/** A failure before the commit: the pod's tasks continue, its network is unlocked, the partial dump goes. Throws the reason. */
export async function undoCheckpoint(ctx: CheckpointContext, run: CheckpointRun, e: unknown): Promise<never> {
  const { pods, host, log } = ctx;
  const { name, target, tmp } = run;
  // The dump failed (CRIU resumed the tasks) or the image could not be stored: the pod goes on.
  if (run.isStopped) host.continueTree(target.pid);
  // Free the partial dump first: on a full disk, recording the pod's state needs the room.
  rmSync(tmp, { recursive: true, force: true });
  await unlockAll(host, target.netnsPath);
  pods.endCheckpoint(name, "running");
  log.warn("checkpoint failed; the pod keeps running", { pod: name, error: errorMessage(e) });
  throw new PreconditionError(`Cannot checkpoint pod "${name}": ${errorMessage(e)}; the pod keeps running`, { cause: e });
}

/**
 * A failure after the commit (recording the image as this host's, the journal, the kill): the
 * image is complete, so the checkpoint is finished as recovery would finish it, never undone;
 * left alone, the pod would stay "checkpointing" with its tasks stopped, and no journal.
 */
export async function finishCommitted(ctx: CheckpointContext, run: CheckpointRun, e: unknown): Promise<void> {
  if (ctx.pods.record(run.name).state !== "checkpointing") return;
  ctx.log.warn("checkpoint failed after its image was committed: finishing it", { pod: run.name, image: run.journal.imageId, error: errorMessage(e) });
  await recoverCheckpoint(ctx, run.journal).catch((x: unknown) =>
    ctx.log.error("could not finish a committed checkpoint", { pod: run.name, error: errorMessage(x) }),
  );
}

/** Whatever the outcome: the temporary directory, the journal and the claim go; the index merge may run. */
export function endCheckpointWork(ctx: CheckpointContext, run: CheckpointRun, releaseMerging: () => void): void {
  rmSync(run.tmp, { recursive: true, force: true });
  removeJournal(ctx.stateDir, run.name);
  ctx.busy.delete(run.name);
  releaseMerging();
}

function checkFreeSpace(ctx: CheckpointContext, r: PodRecord, what: string): void {
  const mem = r.runtime.cgroup ? ctx.pods.memoryOf(r.spec.name) : null;
  const need = (mem ?? 0) + (64 << 20);
  const free = ctx.host.freeBytes(ctx.stateDir);
  if (free < need)
    throw new PreconditionError(
      `Not enough free space to ${what} pod "${r.spec.name}": about ${formatBytes(need)} needed under ${ctx.stateDir}, ${formatBytes(free)} free`,
    );
}

/** The CRIU section of an image, or nothing when it cannot be read (it is only a hint). */
function criuEntriesOf(ctx: CheckpointContext, id: string): FileEntry[] {
  try {
    return ctx.catalogue.manifest(id).criu;
  } catch {
    return [];
  }
}

function latestImageOf(ctx: CheckpointContext, pod: string): string | null {
  return ctx.catalogue.latestOf(pod);
}

/** How to make a service stop using io_uring, by its process name; the general advice otherwise. */
export function ioUringFix(command: string): string {
  if (/^(mariadbd|mysqld)$/.test(command)) {
    return "start MariaDB with innodb_use_native_aio = 0 (in the [mysqld] section of its configuration, or --innodb-use-native-aio=0), which makes InnoDB use its own I/O threads";
  }
  return "configure the service not to use io_uring (its native or asynchronous I/O setting), or build it without liburing";
}

/** CRIU cannot dump an io_uring: refuse before the dump, naming the process, the cause and the fix. */
function checkDumpable(ctx: CheckpointContext, name: string, pid: number): void {
  const found = ctx.host.undumpableResources(pid);
  if (found.length === 0) return;
  const list = found
    .slice(0, 5)
    .map((u) => `pid ${u.pid} (${u.command})`)
    .join(", ");
  const commands = [...new Set(found.map((u) => u.command))];
  throw new PreconditionError(
    `Cannot checkpoint pod "${name}": ${list}${found.length > 5 ? ", ..." : ""} ${found.length === 1 ? "uses" : "use"} io_uring, which CRIU cannot dump; ${commands.map(ioUringFix).join("; ")}`,
  );
}

/**
 * Processes started with `autopod exec` are outside the pod's process tree: CRIU leaves them
 * out of the image, and they die with the pod. Refuse, naming them, unless asked to kill them.
 */
function checkExecSessions(ctx: CheckpointContext, name: string, pid: number, killExec: boolean): void {
  const strays = ctx.host.execSessions(pid);
  if (strays.length === 0) return;
  if (killExec) {
    for (const s of strays) ctx.host.killSession(s.pid);
    return;
  }
  const list = strays
    .slice(0, 10)
    .map((s) => `pid ${s.pid} (${s.command.slice(0, 80) || "?"})`)
    .join(", ");
  throw new ConflictError(
    `Cannot checkpoint pod "${name}": it runs ${strays.length} process${strays.length === 1 ? "" : "es"} started with autopod exec, which the image cannot hold: ${list}${strays.length > 10 ? ", ..." : ""}; wait for ${strays.length === 1 ? "it" : "them"} to end, or checkpoint with --kill-exec`,
  );
}

/** The size of CRIU's page images `names` in `dir` (a progress line's total). */
function pageImageBytes(dir: string, names: Iterable<string>): number {
  let n = 0;
  for (const name of names) {
    try {
      n += statSync(join(dir, name)).size;
    } catch {
      // gone: the capture will say so
    }
  }
  return n;
}
