/**
 * Checkpoint and restore of pods: drives CRIU through the pod runtime's
 * hooks and turns its image set, the pod's writable layer, its base and its
 * volumes into one manifest over content-addressed chunks, and back.
 *
 * Zero data loss: a checkpoint leaves the pod's tasks stopped (`criu dump
 * --leave-stopped`) until the image is committed. Only then are they killed
 * (stop) or continued (--leave-running). Any failure before that continues
 * them, so the pod keeps running. A journal file per checkpoint lets a
 * restarted agent finish or undo one that was interrupted.
 */
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
  type Stats,
} from "node:fs";
import { dirname, join } from "node:path";
import { ConflictError, errorMessage, InvalidArgumentError, NotFoundError, PreconditionError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { criuMinimumFor, compareVersions, criuVersion, findCriu, parseVersion } from "../platform/linux/criu.ts";
import { criuDump, criuRestore, removeNetworkLock } from "../platform/linux/criu-runner.ts";
import { lockNetwork, unlockNetwork } from "../platform/linux/netlock.ts";
import { continuePod, killPod, waitGone } from "../platform/linux/pod-procs.ts";
import { externalMountsOf, type PodRecord, type PodSpec as RuntimePodSpec, type PodView } from "../pods/pod.ts";
import type { PodRuntime } from "../pods/runtime.ts";
import { AddressError } from "../pods/validate.ts";
import type { ChunkStore } from "../store/chunk-store.ts";
import type { ImageCatalogue, ImageInfo } from "../store/image-catalogue.ts";
import { formatBytes } from "../format.ts";
import { VERSION } from "../version.ts";
import { FORMAT_VERSION, logicalBytes, type FileEntry, type Manifest } from "../image/manifest.ts";
import { PageTail } from "./page-tail.ts";
import { captureTree, materializeTree, materializeTreeAsync } from "./tree.ts";

export interface CheckpointerOptions {
  stateDir: string;
  pods: PodRuntime;
  store: ChunkStore;
  catalogue: ImageCatalogue;
  /** Configured criu path ("" = search). */
  criu: string;
  log: Logger;
  /** Hash page images while CRIU writes them (config checkpoint.page_tail); default true. */
  isPageTailOn?: boolean;
}

export interface CheckpointRequest {
  leaveRunning: boolean;
  /** Volume mount points (in the pod) not to include: volumes on shared storage. */
  excludeVolumes: string[];
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
}

export interface RestoreRequest {
  name?: string;
  /** ADDR/PREFIX; a different address closes TCP connections. */
  ip?: string;
}

export interface RestoreResult {
  pod: PodView;
  image: string;
  materializeMs: number;
  criuMs: number;
  totalMs: number;
  /** Where the time went, in order: check (image, host), images (CRIU's files), layer, base and volumes, prepare (record, network, root), criu, finish. */
  phases: Record<string, number>;
  tcp: "kept" | "closed";
  notes: string[];
}

/** The journal of an unfinished checkpoint or restore, for crash recovery. */
interface Journal {
  kind: "checkpoint" | "restore";
  pod: string;
  tmp: string;
  pid: number | null;
  criuPid: number | null;
  imageId: string | null;
  leaveRunning: boolean;
}

const JOURNAL_DIR = "journal";
/** In a restore's directory while its tasks are restored, stopped, and their page images still being checked. */
const UNVERIFIED = "unverified";
/** Ids of the images this agent made, one a line. */
const LOCAL_IMAGES = "images.local";

/** Host directories a pod from another host's image may never get as shared storage. */
const PROTECTED_DIRS = [
  "/",
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/lib32",
  "/lib64",
  "/proc",
  "/root",
  "/run",
  "/sbin",
  "/sys",
  "/usr",
  "/var",
  "/var/lib",
  "/home",
];

/** An excluded (shared-storage) volume named by an image from elsewhere: an existing directory, not a system one, not our state. */
export function checkSharedVolume(host: string, stateDir: string): void {
  const norm = host.replace(/\/+$/, "") || "/";
  if (!host.startsWith("/") || host.split("/").includes(".."))
    throw new PreconditionError(`The image names shared volume "${host}", which is not an absolute path`);
  if (PROTECTED_DIRS.includes(norm) || norm === stateDir || norm.startsWith(stateDir + "/") || stateDir.startsWith(norm + "/")) {
    throw new PreconditionError(`The image, made on another host, names "${host}" as shared storage: autopod will not give a pod that host directory`);
  }
  if (!existsSync(norm) || !statSync(norm).isDirectory()) {
    throw new PreconditionError(`The image's shared volume "${host}" is not a directory on this host: mount the shared storage there first`);
  }
}

/** The writable data of a pod's root: the overlay upper dir, or the private copy. */
export function writableLayerOf(rt: PodRecord["runtime"]): string {
  return join(rt.layerDir, rt.rootKind === "overlay" ? "upper" : "root");
}

export class Checkpointer {
  readonly #o: CheckpointerOptions;
  /** One checkpoint or restore per pod at a time. */
  readonly #busy = new Set<string>();
  /** The last capture of each base (root file system) a checkpoint included, by path. */
  readonly #baseCaptures = new Map<string, { fingerprint: string; entries: FileEntry[] }>();

  constructor(o: CheckpointerOptions) {
    this.#o = o;
    mkdirSync(join(o.stateDir, "tmp"), { recursive: true, mode: 0o700 });
    mkdirSync(join(o.stateDir, JOURNAL_DIR), { recursive: true, mode: 0o700 });
  }

  /** The CRIU binary, checked against this kernel. */
  async criu(): Promise<{ path: string; version: string }> {
    const path = findCriu(this.#o.criu);
    if (!path) throw new PreconditionError("CRIU is not installed: run `autopod doctor` for how to install it");
    const version = await criuVersion(path);
    const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const { min, why } = criuMinimumFor(kernel);
    const v = version ? parseVersion(version) : null;
    if (!v || compareVersions(v, parseVersion(min)!) < 0) {
      throw new PreconditionError(`CRIU ${version ?? "(unknown version)"} at ${path} is too old for Linux ${kernel}: it needs >= ${min}, because ${why}`);
    }
    return { path, version: version! };
  }

  async checkpoint(name: string, req: CheckpointRequest): Promise<CheckpointResult> {
    const { pods, store, catalogue, log } = this.#o;
    const t0 = performance.now();
    const criu = await this.criu();
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
    this.#checkFreeSpace(r, "checkpoint");
    this.#claim(name);
    // The index merge of an earlier checkpoint waits: this one wants both cores.
    const releaseMerging = store.holdMerging();
    const tmp = mkdtempSync(join(this.#o.stateDir, "tmp", `checkpoint-${name}-`));
    const journal: Journal = { kind: "checkpoint", pod: name, tmp, pid: target.pid, criuPid: null, imageId: null, leaveRunning: req.leaveRunning };
    pods.beginCheckpoint(name);
    this.#writeJournal(journal);
    let isStopped = false;
    let isCommitted = false;
    try {
      const imagesDir = join(tmp, "criu");
      mkdirSync(imagesDir);
      const phase = phaseClock(t0);
      // A pod that stops stays cut off from its peers from the dump until it is restored:
      // CRIU lifts its own lock when it leaves the tasks stopped, and anything the pod's
      // kernel acknowledged after the dump would be missing from the image.
      if (!req.leaveRunning) await lockNetwork(target.netnsPath);
      // A stopping pod's pages are hashed as CRIU writes them (a pod left running has its pages hashed after it goes on).
      const tail = new PageTail(imagesDir, { isOn: !req.leaveRunning && this.#o.isPageTailOn !== false });
      const dump = await criuDump({
        criu: criu.path,
        pid: target.pid,
        imagesDir,
        netnsInode: target.netnsInode,
        externalMounts: externalMountsOf(r.runtime),
        leave: "stopped",
        onSpawn: (pid) => this.#writeJournal({ ...journal, criuPid: pid }),
      }).catch((e) => {
        tail.abort();
        throw e;
      });
      log.debug("dump done", { pod: name, dumpMs: round(dump.durationMs), pagesHashedDuringDump: tail.hashedBytes });
      const hashing = tail.finish();
      isStopped = true;
      phase("prepare", dump.durationMs);
      phase("dump");
      const tDump = performance.now();
      const writer = store.writer(`checkpoint ${name}`);
      let freezeMs = 0;
      let manifest: Manifest;
      try {
        // Files first, while the tasks are stopped: they must match the memory image exactly.
        const layer = await captureTree(writableLayerOf(r.runtime), writer);
        const volumeTrees = [];
        for (const v of included) volumeTrees.push({ path: v.pod, entries: (await captureTree(v.host, writer)).entries });
        phase("files");
        if (req.leaveRunning) {
          continuePod(target.pid);
          isStopped = false;
          freezeMs = performance.now() - (tDump - dump.durationMs);
        }
        let base: FileEntry[] | undefined;
        if (r.runtime.rootKind === "overlay") {
          // The base is read-only: unchanged since its last capture (and its chunks still stored), that is reused.
          const cap = await captureTree(r.spec.rootfs, writer, { unchanged: this.#baseCaptures.get(r.spec.rootfs) });
          this.#baseCaptures.set(r.spec.rootfs, { fingerprint: cap.fingerprint, entries: cap.entries });
          base = cap.entries;
        }
        phase("base");
        // CRIU's files never change again: big ones become packs as they are (adopt), and pages
        // equal to the same pages of the previous image are known stored without asking.
        const parentId = this.#latestImageOf(name);
        const previous = parentId ? { entries: this.#criuEntriesOf(parentId), isStored: () => catalogue.has(parentId) } : undefined;
        const images = await captureTree(imagesDir, writer, { isExcluded: (p) => p === "dump.log", hashing, adopt: true, previous });
        phase("images");
        manifest = {
          format: FORMAT_VERSION,
          autopodVersion: VERSION,
          criuVersion: criu.version,
          kernelRelease: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
          cpuFlags: cpuFlags(),
          createdAt: new Date().toISOString(),
          parent: parentId,
          pod: podSpecForManifest(r),
          criu: images.entries,
          rootfs: layer.entries,
          ...(base ? { base } : {}),
          volumes: volumeTrees,
        };
        journal.imageId = catalogue.addManifest(manifest, writer);
        isCommitted = true;
        phase("commit");
        this.#markLocal(journal.imageId);
        this.#writeJournal(journal);
      } finally {
        writer.close();
      }
      const newBytes = writer.newBytes;
      const newChunks = writer.newChunks;
      // CRIU's files are in the store now (big ones adopted, and synced). Delete them before the pod
      // goes: the last process of a pod unmounts its overlay, which syncs the whole file system, and
      // a dump's dirty pages deleted first are never written at all.
      rmSync(imagesDir, { recursive: true, force: true });
      if (req.leaveRunning) {
        pods.endCheckpoint(name, "running");
      } else {
        // The network is still locked: the kill sends no RST to the pod's peers. The tasks are
        // stopped and never run again; their memory is freed, and the pod's network and cgroup
        // released, after the answer (restore and rm of the pod wait for that).
        killPod(target.pid);
        pods.endCheckpoint(name, "checkpointed");
        pods.releaseWhenGone(name, target.pid);
        freezeMs = performance.now() - (tDump - dump.durationMs);
      }
      phase(req.leaveRunning ? "continue" : "stop");
      const total = performance.now() - t0;
      const result: CheckpointResult = {
        id: journal.imageId!,
        pod: name,
        parent: manifest.parent,
        leftRunning: req.leaveRunning,
        freezeMs: round(freezeMs),
        dumpMs: round(dump.durationMs),
        captureMs: round(performance.now() - tDump),
        totalMs: round(total),
        logicalBytes: logicalBytes(manifest),
        newBytes,
        newChunks,
        phases: phase.all,
      };
      log.info("checkpointed pod", { ...result });
      return result;
    } catch (e) {
      if (!isCommitted) {
        // The dump failed (CRIU resumed the tasks) or the image could not be stored: the pod goes on.
        if (isStopped) continuePod(target.pid);
        // Free the partial dump first: on a full disk, recording the pod's state needs the room.
        rmSync(tmp, { recursive: true, force: true });
        await unlockAll(target.netnsPath);
        pods.endCheckpoint(name, "running");
        log.warn("checkpoint failed; the pod keeps running", { pod: name, error: errorMessage(e) });
        throw new PreconditionError(`Cannot checkpoint pod "${name}": ${errorMessage(e)}; the pod keeps running`, { cause: e });
      }
      throw e;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
      this.#removeJournal(name);
      this.#busy.delete(name);
      releaseMerging();
    }
  }

  async restore(imageRef: string, req: RestoreRequest): Promise<RestoreResult> {
    const { pods, catalogue, log } = this.#o;
    const t0 = performance.now();
    const id = this.resolveImage(imageRef);
    const manifest = catalogue.manifest(id);
    const criu = await this.criu();
    this.#checkHost(manifest, criu.version);
    const spec = manifest.pod as ManifestPodSpec;
    const name = req.name ?? spec.name;
    const existing = pods.list().find((p) => p.name === name);
    if (existing && existing.phase !== "checkpointed") {
      throw new ConflictError(`Pod "${name}" already exists and is ${existing.state}: restore under another name with --name`);
    }
    if (existing && req.ip && req.ip !== existing.address) {
      throw new InvalidArgumentError(`Pod "${name}" exists with address ${existing.address}: restore it under a new name to use ${req.ip}`);
    }
    const free = freeBytes(this.#o.stateDir);
    const need = logicalBytes(manifest);
    if (free < need + (64 << 20)) {
      throw new PreconditionError(`Not enough free space to restore: ${formatBytes(need)} needed under ${this.#o.stateDir}, ${formatBytes(free)} free`);
    }
    this.#claim(name);
    const releaseMerging = this.#o.store.holdMerging();
    const tmp = mkdtempSync(join(this.#o.stateDir, "tmp", `restore-${name}-`));
    const notes: string[] = [];
    let registered = false;
    let prepared = false;
    // A pod checkpointed on this host gets its net namespace and cgroup back while its files are made.
    let preparing: ReturnType<PodRuntime["prepareRestore"]> | null = null;
    try {
      if (existing) {
        preparing = pods.prepareRestore(name);
        preparing.catch(() => undefined); // awaited below, or in the catch
      }
      // 1. Read and verify every chunk before anything of the pod changes (linked page images: see below).
      const tm = performance.now();
      const phase = phaseClock(t0);
      phase("check");
      const imagesDir = join(tmp, "criu");
      // Page images the store adopted whole come back as links, and are read back and checked
      // while CRIU restores from them: the tasks stay stopped until every page has matched.
      const { verified } = await materializeTreeAsync(manifest.criu, this.#o.store, imagesDir, { deferLinkedChecks: true });
      phase("images");
      materializeTree(manifest.rootfs, this.#o.store, join(tmp, "layer"));
      phase("layer");
      // Host paths in an image made elsewhere are not trusted: its base and volumes
      // land in this agent's state directory, and it may name no host directory but shared storage.
      const isLocal = this.#isLocal(id);
      const rootfs = this.#baseFor(manifest, spec, tmp, notes, isLocal);
      const volumes = (spec.volumes ?? []).map((v, i) => {
        const section = manifest.volumes.find((s) => s.path === v.pod);
        if (!section) {
          // Excluded at checkpoint: shared storage, expected in place.
          if (!isLocal) checkSharedVolume(v.host, this.#o.stateDir);
          return v;
        }
        const host = isLocal
          ? this.#volumeHostFor(v.host, section.entries, join(tmp, `vol${i}`), name, i, notes)
          : this.#volumeInState(section.entries, join(tmp, `vol${i}`), name, i, notes, `volume ${v.pod} of an image made on another host`);
        return { ...v, host };
      });
      const materializeMs = performance.now() - tm;
      phase("baseAndVolumes");

      // 2. The pod's record, layer, address, net namespace and root.
      const address = req.ip ?? spec.ip;
      if (!existing) {
        await pods
          .registerCheckpointed({
            name,
            rootfs,
            cmd: spec.command,
            env: spec.env ?? {},
            hostname: spec.hostname ?? name,
            address,
            volumes,
            memoryBytes: spec.limits?.memoryBytes ?? null,
            workdir: spec.workdir ?? "/",
          })
          .catch((e: unknown) => {
            if (req.ip === undefined && e instanceof AddressError) {
              throw new InvalidArgumentError(`${errorMessage(e)}: restore it at another address of this host with --ip ADDR/PREFIX`);
            }
            throw e;
          });
        registered = true;
      }
      const record = pods.record(name);
      this.#writeJournal({ kind: "restore", pod: name, tmp, pid: null, criuPid: null, imageId: id, leaveRunning: false });
      const layer = writableLayerOf(record.runtime);
      rmSync(layer, { recursive: true, force: true });
      mkdirSync(dirname(layer), { recursive: true });
      renameSync(join(tmp, "layer"), layer);
      preparing ??= pods.prepareRestore(name);
      const target = await preparing;
      prepared = true;
      const root = await pods.mountRestoreRoot(name);
      phase("prepare");

      // 3. CRIU puts the processes back.
      const tcp = record.spec.address === spec.ip ? "kept" : "closed";
      writeFileSync(join(tmp, UNVERIFIED), "");
      const restored = await criuRestore({
        criu: criu.path,
        imagesDir,
        root,
        netnsPath: target.netnsPath,
        externalMounts: externalMountsOf(record.runtime),
        tcpEstablished: tcp === "kept",
        cgroup: target.cgroup,
        leaveStopped: true,
        onSpawn: (pid) => this.#writeJournal({ kind: "restore", pod: name, tmp, pid: null, criuPid: pid, imageId: id, leaveRunning: false }),
      }).catch(async (e: unknown) => {
        // A damaged page is the better reason, if there is one.
        throw (
          (await verified.then(
            () => null,
            (bad: unknown) => bad,
          )) ?? e
        );
      });
      phase("criu");
      try {
        await verified;
      } catch (e) {
        // Never ran, and its network is still locked: it goes without a trace.
        killPod(restored.pid);
        await waitGone(restored.pid, 10_000);
        throw e;
      }
      rmSync(join(tmp, UNVERIFIED), { force: true });
      continuePod(restored.pid);
      phase("verify");
      // The network was locked since it was made (prepareRestore): the sockets are back, let peers in.
      await unlockNetwork(target.netnsPath);
      const view = pods.adoptRestored(name, restored.pid);
      phase("finish");
      const result: RestoreResult = {
        pod: view,
        image: id,
        materializeMs: round(materializeMs),
        criuMs: round(restored.durationMs),
        totalMs: round(performance.now() - t0),
        phases: phase.all,
        tcp,
        notes,
      };
      log.info("restored pod", { pod: name, image: id, pid: restored.pid, total_ms: result.totalMs, criu_ms: result.criuMs });
      return result;
    } catch (e) {
      if (!prepared && preparing)
        prepared = await preparing.then(
          () => true,
          () => false,
        );
      if (prepared) {
        await removeNetworkLock(pods.target0(name).netnsPath).catch(() => []);
        pods.abortRestore(name);
        await pods.releaseCheckpointed(name).catch(() => undefined);
      }
      // A pod made only for this restore goes; one that was checkpointed here stays checkpointed.
      if (registered) await pods.remove(name, true).catch(() => undefined);
      log.warn("restore failed; the image is intact", { pod: name, image: id, error: errorMessage(e) });
      throw e instanceof InvalidArgumentError || e instanceof ConflictError || e instanceof NotFoundError
        ? e
        : new PreconditionError(`Cannot restore image ${id.slice(0, 12)} as pod "${name}": ${errorMessage(e)}; the image is intact`, { cause: e });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
      this.#removeJournal(name);
      this.#busy.delete(name);
      releaseMerging();
    }
  }

  /** A full image id from a unique prefix of at least 4 hex digits. */
  resolveImage(ref: string): string {
    if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new InvalidArgumentError(`"${ref}" is not an image id (4 to 64 hex digits)`);
    // By id alone: listing images reads every manifest.
    const matches = this.#o.catalogue.idsStartingWith(ref);
    if (matches.length === 0) throw new NotFoundError(`No image "${ref}": see \`autopod images\``);
    if (matches.length > 1) throw new InvalidArgumentError(`Image id "${ref}" is ambiguous: ${matches.map((m) => m.slice(0, 12)).join(", ")}`);
    return matches[0]!;
  }

  images(): ImageInfo[] {
    return this.#o.catalogue.list();
  }

  /**
   * After an agent restart, before the pod runtime recovers: finish or undo
   * the checkpoints and restores that were running when the agent died. A
   * checkpoint whose image was committed ends checkpointed; any other leaves
   * the pod running where it was. A restore that CRIU finished is adopted;
   * any other is undone, and the image is left to retry.
   */
  async recover(): Promise<void> {
    const { pods, log } = this.#o;
    const dir = join(this.#o.stateDir, JOURNAL_DIR);
    for (const f of readdirSync(dir)) {
      if (!f.endsWith(".json")) continue;
      let j: Journal;
      try {
        j = JSON.parse(readFileSync(join(dir, f), "utf8"));
      } catch {
        rmSync(join(dir, f), { force: true });
        continue;
      }
      try {
        if (j.criuPid !== null) await killCriu(j.criuPid);
        const rec = pods.list().find((p) => p.name === j.pod);
        if (rec && j.kind === "checkpoint" && rec.phase === "checkpointing") await this.#recoverCheckpoint(j);
        if (rec && j.kind === "restore" && rec.phase === "restoring") await this.#recoverRestore(j);
      } catch (e) {
        log.error("could not recover an interrupted checkpoint or restore", { pod: j.pod, kind: j.kind, error: errorMessage(e) });
      }
      rmSync(j.tmp, { recursive: true, force: true });
      rmSync(join(dir, f), { force: true });
    }
    // Temporary directories of work that left no journal.
    for (const t of readdirSync(join(this.#o.stateDir, "tmp"))) rmSync(join(this.#o.stateDir, "tmp", t), { recursive: true, force: true });
  }

  async #recoverCheckpoint(j: Journal): Promise<void> {
    const { pods, catalogue, log } = this.#o;
    const isCommitted = j.imageId !== null && catalogue.has(j.imageId);
    const isAlive = j.pid !== null && isProcessAlive(j.pid);
    const netns = pods.target0(j.pod).netnsPath;
    if (isCommitted && !j.leaveRunning) {
      if (isAlive) {
        await lockNetwork(netns).catch(() => undefined);
        killPod(j.pid!);
        await waitGone(j.pid!, 10_000);
      }
      pods.endCheckpoint(j.pod, "checkpointed");
      await pods.releaseCheckpointed(j.pod);
      log.info("finished a checkpoint the agent was killed in: the image is complete and the pod checkpointed", { pod: j.pod, image: j.imageId });
      return;
    }
    if (isAlive) {
      continuePod(j.pid!);
      await unlockAll(netns);
    }
    pods.endCheckpoint(j.pod, "running");
    log.info(
      isCommitted
        ? "a --leave-running checkpoint was interrupted after its image was committed: the pod runs on"
        : "undid a checkpoint the agent was killed in: the pod runs on",
      { pod: j.pod, image: isCommitted ? j.imageId : null },
    );
  }

  async #recoverRestore(j: Journal): Promise<void> {
    const { pods, log } = this.#o;
    const pidFile = join(j.tmp, "criu", "restore.pid");
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) : NaN;
    const isAlive = Number.isInteger(pid) && pid > 0 && isProcessAlive(pid);
    if (isAlive && existsSync(join(j.tmp, UNVERIFIED))) {
      // Restored but stopped, its pages not all checked yet: it never ran, so it goes, and a retry works.
      killPod(pid);
      await waitGone(pid, 10_000);
    } else if (isAlive) {
      continuePod(pid); // in case the agent died between the check and the SIGCONT
      await unlockAll(pods.target0(j.pod).netnsPath);
      pods.adoptRestored(j.pod, pid);
      log.info("adopted a pod whose restore finished while the agent was down", { pod: j.pod, pid });
      return;
    }
    await removeNetworkLock(pods.target0(j.pod).netnsPath).catch(() => []);
    pods.abortRestore(j.pod);
    await pods.releaseCheckpointed(j.pod); // kills anything half-restored in the pod's cgroup
    log.info("undid a restore the agent was killed in: the pod is checkpointed and the image intact", { pod: j.pod, image: j.imageId });
  }

  #claim(name: string): void {
    if (this.#busy.has(name)) throw new ConflictError(`Pod "${name}" is already being checkpointed or restored`);
    this.#busy.add(name);
  }

  /** The CRIU section of an image, or nothing when it cannot be read (it is only a hint). */
  #criuEntriesOf(id: string): FileEntry[] {
    try {
      return this.#o.catalogue.manifest(id).criu;
    } catch {
      return [];
    }
  }

  #latestImageOf(pod: string): string | null {
    return this.#o.catalogue.latestOf(pod);
  }

  #checkFreeSpace(r: PodRecord, what: string): void {
    const mem = r.runtime.cgroup ? this.#o.pods.memoryOf(r.spec.name) : null;
    const need = (mem ?? 0) + (64 << 20);
    const free = freeBytes(this.#o.stateDir);
    if (free < need)
      throw new PreconditionError(
        `Not enough free space to ${what} pod "${r.spec.name}": about ${formatBytes(need)} needed under ${this.#o.stateDir}, ${formatBytes(free)} free`,
      );
  }

  /** Refuse, before touching anything, an image this host cannot run. */
  #checkHost(m: Manifest, criuVersion: string): void {
    const why = whyHostCannotRestore(m, criuVersion, cpuFlags());
    if (why) throw new PreconditionError(why);
  }

  /** The base root for a restored pod: the recorded path when it holds the same files, else a copy from the image. */
  #baseFor(m: Manifest, spec: ManifestPodSpec, tmp: string, notes: string[], isLocal: boolean): string {
    const recorded = spec.rootfs;
    if (!m.base) {
      if (!isLocal) throw new PreconditionError("The image was made on another host and carries no base root file system");
      if (!recorded || !existsSync(recorded)) throw new PreconditionError(`The image's base root file system "${recorded}" is not on this host`);
      return recorded;
    }
    if (isLocal && recorded && existsSync(recorded) && sameTree(recorded, m.base)) return recorded;
    const key = new Bun.CryptoHasher("sha256")
      .update(JSON.stringify(m.base.map((e) => [e.path, e.type, e.size, e.mode, Buffer.from(e.chunks).toString("hex"), e.target ?? ""])))
      .digest("hex")
      .slice(0, 16);
    const dir = join(this.#o.stateDir, "bases", key);
    if (!existsSync(dir)) {
      mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
      materializeTree(m.base, this.#o.store, join(tmp, "base"));
      renameSync(join(tmp, "base"), dir);
    }
    const why = !isLocal ? "comes from another host" : recorded && existsSync(recorded) ? "differs here" : "is not on this host";
    notes.push(`base root file system "${recorded}" ${why}: using the image's copy at ${dir}`);
    return dir;
  }

  /** Where a restored volume lives: its recorded directory when it is missing, empty or unchanged; else a fresh one beside the pod. */
  #volumeHostFor(hostPath: string, entries: FileEntry[], staged: string, pod: string, i: number, notes: string[]): string {
    if (existsSync(hostPath) && sameTree(hostPath, entries)) return hostPath;
    const isEmptyOrMissing = !existsSync(hostPath) || (statSync(hostPath).isDirectory() && readdirSync(hostPath).length === 0);
    materializeTree(entries, this.#o.store, staged);
    if (isEmptyOrMissing) {
      if (existsSync(hostPath)) rmSync(hostPath, { recursive: true });
      mkdirSync(dirname(hostPath), { recursive: true });
      renameSync(staged, hostPath);
      return hostPath;
    }
    // Never overwrite data an operator may need: the image's copy goes beside the pod.
    return this.#volumeInState(entries, staged, pod, i, notes, `volume "${hostPath}" changed since the checkpoint and was left as it is`, true);
  }

  /** A volume's contents from the image, in <state>/volumes/POD/volN. */
  #volumeInState(entries: FileEntry[], staged: string, pod: string, i: number, notes: string[], why: string, isStaged = false): string {
    if (!isStaged) materializeTree(entries, this.#o.store, staged);
    const dir = join(this.#o.stateDir, "volumes", pod, `vol${i}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    renameSync(staged, dir);
    notes.push(`${why}: the pod uses the image's copy at ${dir}`);
    return dir;
  }

  /** Images this agent made: only their host paths (base, volumes) are trusted at restore. */
  #markLocal(id: string): void {
    appendFileSync(join(this.#o.stateDir, LOCAL_IMAGES), `${id}\n`);
  }

  #isLocal(id: string): boolean {
    const p = join(this.#o.stateDir, LOCAL_IMAGES);
    return existsSync(p) && readFileSync(p, "utf8").split("\n").includes(id);
  }

  #writeJournal(j: Journal): void {
    const p = join(this.#o.stateDir, JOURNAL_DIR, `${j.pod}.json`);
    writeFileSync(`${p}.tmp`, JSON.stringify(j));
    renameSync(`${p}.tmp`, p);
  }

  #removeJournal(pod: string): void {
    rmSync(join(this.#o.stateDir, JOURNAL_DIR, `${pod}.json`), { force: true });
  }
}

/** The pod spec as the manifest records it. */
interface ManifestPodSpec {
  name: string;
  command: string[];
  env?: Record<string, string>;
  ip: string;
  hostname?: string;
  limits?: { memoryBytes: number | null };
  volumes?: Array<{ host: string; pod: string; readonly: boolean }>;
  rootfs?: string;
  rootKind?: "overlay" | "copy";
  workdir?: string;
}

function podSpecForManifest(r: PodRecord): Manifest["pod"] {
  const s: RuntimePodSpec = r.spec;
  const spec: ManifestPodSpec = {
    name: s.name,
    command: s.cmd,
    env: s.env,
    ip: s.address,
    hostname: s.hostname,
    limits: { memoryBytes: s.memoryBytes },
    volumes: s.volumes,
    rootfs: s.rootfs,
    rootKind: r.runtime.rootKind,
    workdir: s.workdir,
  };
  return spec as unknown as Manifest["pod"];
}

/** Why this host cannot restore an image (CRIU too old for it, CPU features missing), or null. */
export function whyHostCannotRestore(m: Pick<Manifest, "criuVersion" | "cpuFlags">, criuVersion: string, hostFlags: readonly string[]): string | null {
  const have = parseVersion(criuVersion);
  const made = m.criuVersion ? parseVersion(m.criuVersion) : null;
  if (have && made && compareVersions(have, made) < 0) {
    return `The image was made by CRIU ${m.criuVersion}; this host has CRIU ${criuVersion}, which may not read it: upgrade CRIU here`;
  }
  const host = new Set(hostFlags);
  const missing = m.cpuFlags.filter((f) => !host.has(f) && RELEVANT_CPU_FLAGS.has(f));
  if (missing.length) return `This host's CPU lacks features the image's processes may use: ${missing.join(", ")}; restore it on a host that has them`;
  return null;
}

/** CPU features a restored process may have chosen code paths by (glibc's hwcaps and friends). */
const RELEVANT_CPU_FLAGS = new Set([
  "sse4_1",
  "sse4_2",
  "avx",
  "avx2",
  "avx512f",
  "avx512bw",
  "avx512cd",
  "avx512dq",
  "avx512vl",
  "bmi1",
  "bmi2",
  "fma",
  "aes",
  "sha_ni",
  "adx",
  "movbe",
  "popcnt",
  "xsave",
  "rdrand",
  "rdseed",
  "erms",
  "fsrm",
]);

export function cpuFlags(cpuinfo = readFileSync("/proc/cpuinfo", "utf8")): string[] {
  const m = /^flags\s*:\s*(.*)$/m.exec(cpuinfo);
  return m ? m[1]!.trim().split(/\s+/).sort() : [];
}

/** Does `dir` hold the tree's files, by type, size and mtime (a cheap identity check)? */
function sameTree(dir: string, entries: readonly FileEntry[]): boolean {
  try {
    for (const e of entries) {
      const p = e.path === "." ? dir : join(dir, e.path);
      const st = statSafe(p);
      if (!st) return false;
      if (e.type === "file" && (!st.isFile() || st.size !== e.size || Math.abs(st.mtimeMs - e.mtimeMs) > 1)) return false;
      if (e.type === "dir" && !st.isDirectory()) return false;
      if (e.type === "symlink" && !st.isSymbolicLink()) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function statSafe(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** Named consecutive spans of time: phase(name) closes the span since the last one (or `endsBefore` ms before now). */
function phaseClock(start: number): ((name: string, endsBefore?: number) => void) & { all: Record<string, number> } {
  let mark = start;
  const all: Record<string, number> = {};
  const phase = (name: string, endsBefore = 0) => {
    const now = performance.now() - endsBefore;
    all[name] = round(now - mark);
    mark = now;
  };
  return Object.assign(phase, { all });
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Lift every lock from a pod's network: ours and any CRIU left behind. */
async function unlockAll(netnsPath: string): Promise<void> {
  await removeNetworkLock(netnsPath).catch(() => []);
  await unlockNetwork(netnsPath).catch(() => undefined);
}

function isProcessAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

async function killCriu(pid: number): Promise<void> {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (!cmd.split("\0")[0]?.endsWith("criu")) return;
    process.kill(pid, "SIGKILL");
    await waitGone(pid, 5000);
  } catch {
    // gone
  }
}
