/**
 * Restore of a pod from an image, as named steps: check (image, host, name,
 * room), start (claim), materialize (CRIU's files, layer, base and volumes),
 * prepare the host (record, layer, network, cgroup, root), restore the
 * processes (CRIU, tasks left stopped), verify (the linked page images CRIU
 * read, then continue), unlock and adopt; undo on any failure. The
 * orchestration is restorePod; a migration reuses the steps.
 *
 * Page images the store adopted whole come back as links to its packs, and are
 * read back and checked while CRIU restores from them: the tasks stay stopped
 * until every page has matched, and a damaged one means they never run.
 * Every other chunk is checked as it is materialized.
 */
import { failpoint } from "../debug/failpoints.ts";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConflictError, errorMessage, InvalidArgumentError, NotFoundError, PreconditionError } from "../errors.ts";
import { formatBytes } from "../format.ts";
import { externalMountsOf, type PodRecord, type PodView } from "../pods/pod.ts";
import type { PodRuntime } from "../pods/runtime.ts";
import type { TcpConnection } from "../platform/checkpoint-host.ts";
import { childPath } from "../pods/child-path.ts";
import { AddressError, checkPodName } from "../pods/validate.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import { type CheckpointContext, claim } from "./_context.ts";
import { checkHost, checkHostFacilities, requireCriu } from "./host-compat.ts";
import { checkCriuFiles, checkCriuImage, expectedPodOf } from "./criu-image/index.ts";
import { CRIU_WORK, removeJournal, UNVERIFIED, writeJournal } from "./journal.ts";
import { type ManifestPodSpec, podCpuOf } from "./manifest-pod.ts";
import { logicalBytes, type Manifest } from "../image/manifest.ts";
import { type PhaseClock, phaseClock, round } from "./phase-clock.ts";
import { baseFor, checkSharedVolume, volumeHostFor, volumeInState, writableLayerOf } from "./placement.ts";
import { materializeTree, materializeTreeAsync, type RawPackChecks, type StagedFile, startRawPackChecks } from "./tree.ts";

export interface RestoreRequest {
  name?: string;
  /** ADDR/PREFIX; a different address closes TCP connections. */
  ip?: string;
  /** Post-copy: the image's memory is lazy (fetched from the source by `criu lazy-pages`). */
  lazyPages?: boolean;
}

export interface RestoreResult {
  pod: PodView;
  image: string;
  materializeMs: number;
  criuMs: number;
  totalMs: number;
  /** Where the time went, in order: check (image, host), images (CRIU's files), layer, base and volumes, prepare (record, network, root), criu, verify, finish. */
  phases: Record<string, number>;
  tcp: "kept" | "closed";
  notes: string[];
}

/** What checkRestore found: this host can restore the image, as this pod. */
export interface CheckedRestore {
  id: string;
  manifest: Manifest;
  criu: { path: string; version: string };
  spec: ManifestPodSpec;
  name: string;
  /** The pod, when it is checkpointed on this host. */
  existing: PodView | undefined;
  /** This host signed the image: only then are its host paths (base, volumes) trusted. */
  isLocal: boolean;
}

/** One restore as it goes: what each step reads, and leaves for the next. */
export interface RestoreRun extends CheckedRestore {
  req: RestoreRequest;
  tmp: string;
  imagesDir: string;
  notes: string[];
  phase: PhaseClock;
  /** The pod's record was made for this restore (it goes again on failure). */
  registered: boolean;
  /** The pod's net namespace and cgroup are made (prepareRestore resolved). */
  prepared: boolean;
  /** A pod checkpointed on this host gets its net namespace and cgroup back while its files are made. */
  preparing: ReturnType<PodRuntime["prepareRestore"]> | null;
  /** Checks of the page images' raw packs, started before anything is made (startRawPackChecks). */
  rawPackChecks?: RawPackChecks;
  /** CRIU's work directory, when made before restoreProcesses (makeCriuWorkDir). */
  criuWorkDir?: string;
}

/** The pod's files in place: its base, its volumes, and CRIU's files with the pending check of their linked page images. */
export interface Materialized {
  verified: Promise<void>;
  rootfs: string;
  volumes: Array<{ host: string; pod: string; readonly: boolean }>;
  materializeMs: number;
}

/** What the host holds for the pod once prepared: its record, its net namespace and cgroup, its mounted root. */
export interface PreparedHost {
  record: PodRecord;
  target: { netnsPath: string; cgroup: string | null };
  root: string;
}

export async function restorePod(ctx: CheckpointContext, imageRef: string, req: RestoreRequest): Promise<RestoreResult> {
  const { log } = ctx;
  const t0 = performance.now();
  const checked = await checkRestore(ctx, imageRef, req);
  const { id, name } = checked;
  claim(ctx, name);
  const releaseMerging = ctx.store.holdMerging();
  // The page images' chunks are read and checked from now on, while everything else is made and CRIU restores.
  const rawPackChecks = startRawPackChecks(checked.manifest.criu, ctx.store);
  const run = { ...startRestore(ctx, checked, req, t0), rawPackChecks };
  try {
    const placed = await materialize(ctx, run);
    await failpoint("restore.files-made");
    const prepared = await prepareHost(ctx, run, placed);
    await failpoint("restore.prepared");
    const { restored, tcp } = await restoreProcesses(ctx, run, prepared, placed.verified);
    await failpoint("restore.criu-done");
    const connections = await verifyRestored(ctx, run, restored.pid, placed.verified);
    const view = await unlockAndAdopt(ctx, run, prepared, restored.pid, connections);
    const result: RestoreResult = {
      pod: view,
      image: id,
      materializeMs: round(placed.materializeMs),
      criuMs: round(restored.durationMs),
      totalMs: round(performance.now() - t0),
      phases: run.phase.all,
      tcp,
      notes: run.notes,
    };
    log.info("restored pod", { pod: name, image: id, pid: restored.pid, total_ms: result.totalMs, criu_ms: result.criuMs });
    return result;
  } catch (e) {
    return await undoRestore(ctx, run, e);
  } finally {
    rmSync(run.tmp, { recursive: true, force: true });
    removeJournal(ctx.stateDir, name);
    ctx.busy.delete(name);
    releaseMerging();
  }
}

/** A full image id from a unique prefix of at least 4 hex digits. */
export function resolveImage(catalogue: ImageCatalogue, ref: string): string {
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new InvalidArgumentError(`"${ref}" is not an image id (4 to 64 hex digits)`);
  // By id alone: listing images reads every manifest.
  const matches = catalogue.idsStartingWith(ref);
  if (matches.length === 0) throw new NotFoundError(`No image "${ref}": see \`autopod images\``);
  if (matches.length > 1) throw new InvalidArgumentError(`Image id "${ref}" is ambiguous: ${matches.map((m) => m.slice(0, 12)).join(", ")}`);
  return matches[0]!;
}

/** Refuse, before anything changes, a restore that cannot work: no such image, a host that cannot run it, a name in use, no room. */
export async function checkRestore(ctx: CheckpointContext, imageRef: string, req: RestoreRequest): Promise<CheckedRestore> {
  const { pods, catalogue } = ctx;
  // Asked first, answered while the manifest is read and checked (on Linux a netlink request, no process).
  const nftables = ctx.host.whyNoNftables();
  nftables.catch(() => undefined); // awaited below, unless an earlier check throws
  const id = resolveImage(catalogue, imageRef);
  const manifest = catalogue.manifest(id);
  checkCriuFiles(id, manifest.criu); // only plain files with CRIU's names, before anything is written
  const criu = await requireCriu(ctx.host, ctx.criu);
  checkHost(ctx.host, manifest, criu.version);
  await checkHostFacilities(ctx.host, manifest, nftables);
  const spec = manifest.pod as ManifestPodSpec;
  const name = req.name ?? spec.name;
  // Before anything is written or deleted with it (tmp, journal, volumes, layer).
  checkPodName(name);
  // Host paths (base, volumes) of an image are trusted only when this host signed it.
  const isLocal = await ctx.trust.isLocal(id);
  // An image from elsewhere names shared storage (volumes excluded at checkpoint): checked before anything is made.
  if (!isLocal) {
    for (const v of spec.volumes ?? []) if (!manifest.volumes.some((s) => s.path === v?.pod)) checkSharedVolume(v?.host, ctx.stateDir);
  }
  const existing = pods.list().find((p) => p.name === name);
  if (existing && existing.phase !== "checkpointed") {
    throw new ConflictError(`Pod "${name}" already exists and is ${existing.state}: restore under another name with --name`);
  }
  if (existing) checkOwnImage(id, spec, pods.record(name), isLocal);
  if (existing && req.ip && req.ip !== existing.address) {
    throw new InvalidArgumentError(`Pod "${name}" exists with address ${existing.address}: restore it under a new name to use ${req.ip}`);
  }
  // Routed pod network: an address a pod of another host holds is refused before anything is made.
  await pods.checkAddressInCluster(req.ip ?? existing?.address ?? spec.ip, name);
  const free = ctx.host.freeBytes(ctx.stateDir);
  const need = logicalBytes(manifest);
  if (free < need + (64 << 20)) {
    throw new PreconditionError(`Not enough free space to restore: ${formatBytes(need)} needed under ${ctx.stateDir}, ${formatBytes(free)} free`);
  }
  return { id, manifest, criu, spec, name, existing, isLocal };
}

/** The restore's temporary directory. */
export function startRestore(ctx: CheckpointContext, checked: CheckedRestore, req: RestoreRequest, t0: number): RestoreRun {
  const tmp = mkdtempSync(childPath(ctx.stateDir, "tmp", `restore-${checked.name}-`));
  return {
    ...checked,
    req,
    tmp,
    imagesDir: join(tmp, "criu"),
    notes: [],
    phase: phaseClock(t0),
    registered: false,
    prepared: false,
    preparing: null,
  };
}

/** The pod's files from the image: CRIU's files (linked page images checked later), its layer, its base and volumes. */
export async function materialize(ctx: CheckpointContext, run: RestoreRun, staged?: ReadonlyMap<string, StagedFile>): Promise<Materialized> {
  const { pods, store } = ctx;
  const { manifest, spec, tmp, phase } = run;
  if (run.existing) {
    run.preparing = pods.prepareRestore(run.name);
    run.preparing.catch(() => undefined); // awaited in prepareHost, or in undoRestore
  }
  // 1. Make the image's files, checking each chunk as it is read (page images linked whole from the store are checked later, while CRIU restores: see below).
  const tm = performance.now();
  phase("check");
  // Page images the store adopted whole come back as links, and are read back and checked
  // while CRIU restores from them: the tasks stay stopped until every page has matched.
  // A migration's destination may have staged the last round's big files before the freeze: only their changes are written.
  const { verified } = await materializeTreeAsync(manifest.criu, store, run.imagesDir, {
    deferLinkedChecks: true,
    staged,
    ...(run.rawPackChecks ? { rawPackChecks: run.rawPackChecks } : {}),
  });
  // An image from elsewhere may hold nothing autopod would not have made for its pod (mounts, capabilities, files).
  if (!run.isLocal) checkCriuImage(run.id, run.imagesDir, { ...expectedPodOf(spec), hasLazyPages: run.req.lazyPages === true });
  phase("images");
  materializeTree(manifest.rootfs, store, join(tmp, "layer"));
  phase("layer");
  // Host paths in an image made elsewhere are not trusted: its base and volumes
  // land in this agent's state directory, and it may name no host directory but shared storage.
  const isLocal = run.isLocal;
  const rootfs = baseFor(ctx, manifest, spec, tmp, run.notes, isLocal);
  const volumes = placeVolumes(ctx, run, isLocal);
  const materializeMs = performance.now() - tm;
  phase("baseAndVolumes");
  return { verified, rootfs, volumes, materializeMs };
}

/** Each volume of the pod: from the image (in place or beside the pod), or shared storage expected in place. */
function placeVolumes(ctx: CheckpointContext, run: RestoreRun, isLocal: boolean): Materialized["volumes"] {
  const { manifest, spec, tmp, name, notes } = run;
  return (spec.volumes ?? []).map((v, i) => {
    const section = manifest.volumes.find((s) => s.path === v.pod);
    if (!section) {
      // Excluded at checkpoint: shared storage, expected in place (checked in checkRestore).
      return v;
    }
    const host = isLocal
      ? volumeHostFor(ctx, v.host, section.entries, join(tmp, `vol${i}`), name, i, notes)
      : volumeInState(ctx, section.entries, join(tmp, `vol${i}`), name, i, notes, `volume ${v.pod} of an image made on another host`);
    return { ...v, host };
  });
}

/** 2. The pod's record, layer, address, net namespace (locked) and cgroup, and its root mounted for CRIU. */
export async function prepareHost(ctx: CheckpointContext, run: RestoreRun, placed: Materialized): Promise<PreparedHost> {
  const { pods } = ctx;
  const { name, spec, req, existing, tmp, id } = run;
  const address = req.ip ?? spec.ip;
  if (!existing) {
    await pods
      .registerCheckpointed({
        name,
        rootfs: placed.rootfs,
        cmd: spec.command,
        env: spec.env ?? {},
        hostname: spec.hostname ?? name,
        address,
        volumes: placed.volumes,
        memoryBytes: spec.limits?.memoryBytes ?? null,
        cpus: spec.limits?.cpus ?? null,
        pidsMax: spec.limits?.pidsMax ?? null,
        workdir: spec.workdir ?? "/",
        cpu: podCpuOf(run.manifest),
        ...(spec.user ? { user: spec.user } : {}),
      })
      .catch((e: unknown) => {
        if (req.ip === undefined && e instanceof AddressError) {
          throw new InvalidArgumentError(`${errorMessage(e)}: restore it at another address of this host with --ip ADDR/PREFIX`);
        }
        throw e;
      });
    run.registered = true;
  }
  const record = pods.record(name);
  writeJournal(ctx.stateDir, { kind: "restore", pod: name, tmp, pid: null, criuPid: null, imageId: id, leaveRunning: false });
  const layer = writableLayerOf(record.runtime);
  rmSync(layer, { recursive: true, force: true });
  mkdirSync(dirname(layer), { recursive: true });
  renameSync(join(tmp, "layer"), layer);
  run.preparing ??= pods.prepareRestore(name);
  const target = await run.preparing;
  run.prepared = true;
  const root = await pods.mountRestoreRoot(name);
  run.phase("prepare");
  return { record, target, root };
}

/** 3. CRIU puts the processes back, stopped; the image's page images are still being checked. */
export async function restoreProcesses(
  ctx: CheckpointContext,
  run: RestoreRun,
  prepared: PreparedHost,
  verified: Promise<void>,
  /** Post-copy: starts `criu lazy-pages` in CRIU's work directory and resolves once it listens; the restore then takes its memory from it. */
  lazyPages?: (workDir: string) => Promise<void>,
): Promise<{ restored: { pid: number; durationMs: number }; tcp: RestoreResult["tcp"] }> {
  const { record, target, root } = prepared;
  const { name, tmp, id } = run;
  const tcp = record.spec.address === run.spec.ip ? "kept" : "closed";
  writeFileSync(join(tmp, UNVERIFIED), "");
  const workDir = run.criuWorkDir ?? mkdirFresh(join(tmp, CRIU_WORK));
  if (lazyPages) await lazyPages(workDir);
  const restored = await ctx.host
    .restore({
      criu: run.criu.path,
      imagesDir: run.imagesDir,
      workDir,
      ...(lazyPages ? { lazyPages: true } : {}),
      root,
      netnsPath: target.netnsPath,
      externalMounts: externalMountsOf(record.runtime),
      tcpEstablished: tcp === "kept",
      cgroup: target.cgroup,
      leaveStopped: true,
      // Locked since prepareRestore made it, until unlocked after CRIU: CRIU's own lock would only add time.
      isNetworkLocked: true,
      onSpawn: (pid) => {
        writeJournal(ctx.stateDir, { kind: "restore", pod: name, tmp, pid: null, criuPid: pid, imageId: id, leaveRunning: false });
        failpoint("restore.criu-started");
      },
    })
    .catch(async (e: unknown) => {
      run.rawPackChecks?.useAllThreads();
      // A damaged page is the better reason, if there is one.
      throw (
        (await verified.then(
          () => null,
          (bad: unknown) => bad,
        )) ?? e
      );
    });
  // CRIU has exited: a check still going (a busy machine) takes the core CRIU had.
  run.rawPackChecks?.useAllThreads();
  run.phase("criu");
  return { restored, tcp };
}

/** Every page image matched: the restored tasks may run. A damaged one: they never ran, and go. */
export async function verifyRestored(ctx: CheckpointContext, run: RestoreRun, pid: number, verified: Promise<void>): Promise<TcpConnection[]> {
  const { host } = ctx;
  try {
    await verified;
  } catch (e) {
    // Never ran, and its network is still locked: it goes without a trace.
    host.killTree(pid);
    await host.waitGone(pid, 10_000);
    throw e;
  }
  rmSync(join(run.tmp, UNVERIFIED), { force: true });
  await failpoint("restore.verified");
  const connections = host.continueTree(pid);
  run.phase("verify");
  await failpoint("restore.continued");
  return connections;
}

/** The network was locked since it was made (prepareRestore): the sockets are back, let peers in (and retransmit now); the pod runs again. */
export async function unlockAndAdopt(
  ctx: CheckpointContext,
  run: RestoreRun,
  prepared: PreparedHost,
  pid: number,
  connections: readonly TcpConnection[],
): Promise<PodView> {
  await ctx.host.unlockNetwork(prepared.target.netnsPath);
  ctx.host.nudgePeers(prepared.target.netnsPath, connections);
  const view = ctx.pods.adoptRestored(run.name, pid);
  run.phase("finish");
  return view;
}

/** A failed restore: the pod's network lock goes, it is checkpointed again (or gone, when made for this restore); the image is intact. Throws the reason. */
export async function undoRestore(ctx: CheckpointContext, run: RestoreRun, e: unknown): Promise<never> {
  const { pods, host, log } = ctx;
  const { name, id } = run;
  if (!run.prepared && run.preparing)
    run.prepared = await run.preparing.then(
      () => true,
      () => false,
    );
  if (run.prepared) {
    await host.removeCriuLock(pods.target0(name).netnsPath).catch(() => []);
    pods.abortRestore(name);
    await pods.releaseCheckpointed(name).catch(() => undefined);
  }
  // A pod made only for this restore goes; one that was checkpointed here stays checkpointed.
  if (run.registered) await pods.remove(name, true).catch(() => undefined);
  log.warn("restore failed; the image is intact", { pod: name, image: id, error: errorMessage(e) });
  throw e instanceof InvalidArgumentError || e instanceof ConflictError || e instanceof NotFoundError
    ? e
    : new PreconditionError(`Cannot restore image ${id.slice(0, 12)} as pod "${name}": ${errorMessage(e)}; the image is intact`, { cause: e });
}

/** CRIU's work directory for this restore, made now (post-copy starts its lazy-pages daemon there before the processes are restored). */
export function makeCriuWorkDir(run: RestoreRun): string {
  run.criuWorkDir ??= mkdirFresh(join(run.tmp, CRIU_WORK));
  return run.criuWorkDir;
}

/** A new directory (failing if anything is there already): its path. */
function mkdirFresh(dir: string): string {
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/**
 * Restoring into a checkpointed pod replaces its layer and takes its name,
 * address and volumes: only that pod's own image may (made here, by that
 * pod instance; images from before pod ids were recorded, by its name).
 */
function checkOwnImage(id: string, spec: ManifestPodSpec, pod: PodRecord, isLocal: boolean): void {
  const name = pod.spec.name;
  const isOwn = isLocal && (spec.podId !== undefined ? spec.podId === pod.id : spec.name === name);
  if (!isOwn) {
    throw new ConflictError(
      `Image ${id.slice(0, 12)} is not pod "${name}"'s own (${isLocal ? "it was made by another pod of that name" : "it was not made on this host"}): ` +
        `restoring it would take over the checkpointed pod "${name}"; restore it under another name with --name`,
    );
  }
}
