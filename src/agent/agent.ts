/**
 * The daemon's wiring: state directory and its lock, the pod runtime, the
 * local API on its unix socket, the reaper, and signals. Stopping the agent
 * never stops pods.
 */
import { nativePodInit } from "../platform/linux/native-pod-init.ts";
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, realpathSync, type Stats, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createLocalApp, IDLE_TIMEOUT_SECONDS } from "../api/local/app.ts";
import { addFailpointRoutes } from "../api/local/failpoint-routes.ts";
import { addImageRoutes } from "../api/local/image-routes.ts";
import { addStatusRoutes } from "../api/local/status-routes.ts";
import { addMigrateRoutes } from "../api/local/migrate-routes.ts";
import { addUpdateRoutes } from "../api/local/update-routes.ts";
import { createUpdateService, RecordingTestEvacuator } from "../update/index.ts";
import { bootId } from "../platform/linux/boot-id.ts";
import { run } from "../platform/linux/exec.ts";
import { addEvacuateRoutes } from "../api/local/evacuate-routes.ts";
import { Evacuations, recordArrival } from "../evacuate/index.ts";
import { Migrations } from "../migrate/index.ts";
import { collectStatus, hostPaths, StatusService, statusCacheDir, statusWatchPaths } from "../status/index.ts";
import { Checkpointer } from "../checkpoint/checkpointer.ts";
import { ChunkStore } from "../store/chunk-store.ts";
import { ChunkWorkers } from "../store/chunk-workers.ts";
import { ImageCatalogue } from "../store/image-catalogue.ts";
import { SpaceReserve } from "../store/space-reserve.ts";
import { LocalClient } from "../api/local/client.ts";
import { addClusterRoutes } from "../api/local/cluster-routes.ts";
import { createPeerApp } from "../api/peer/app.ts";
import { Cluster } from "../cluster/cluster.ts";
import { ClusterCpu } from "../cluster/cluster-cpu.ts";
import { cpuFlags } from "../platform/linux/cpu.ts";
import { PeerDirectory } from "../api/peer/peer-directory.ts";
import { peerInfoProvider } from "./peer-info.ts";
import { PodWatch } from "./pod-watch.ts";
import { PeerListener } from "./peer-listener.ts";
import type { Config } from "../config/schema.ts";
import { areFailpointsEnabled, enableFailpoints } from "../debug/failpoints.ts";
import { PreconditionError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { linuxCheckpointHost } from "../platform/linux/checkpoint-host.ts";
import { linuxPodHost } from "../platform/linux/pod-host.ts";
import { setChildSubreaper, tryLock } from "../platform/linux/libc.ts";
import { PodStore } from "../pods/store.ts";
import { hasProcesses } from "../pods/lifecycle.ts";
import { OrphanReaper } from "../pods/orphan-reaper.ts";
import { agentKeyOf, PodRuntime } from "../pods/runtime.ts";
import { HostTrustStore, ImageTrust, loadOrCreateHostKey } from "../trust/index.ts";
import { VERSION } from "../version.ts";

/** How often peers are asked for newer revocation lists. */
const PEER_SYNC_INTERVAL_MS = 60_000;

export interface RunningAgent {
  /** Resolves when the agent has shut down (after stop() or a signal). */
  done: Promise<void>;
  /** Evacuation of this host's pods and their return (what the update cycle calls). */
  evacuations: Evacuations;
  stop(): Promise<void>;
}

export interface AgentOptions {
  /** For tests only: allow failpoints and set these (src/debug/failpoints.ts); undefined keeps them off. */
  failpoints?: string;
}

export async function startAgent(config: Config, log: Logger, options: AgentOptions = {}): Promise<RunningAgent> {
  if (process.getuid?.() !== 0) throw new PreconditionError("The agent needs root: it creates namespaces, mounts and cgroups");
  if (options.failpoints !== undefined) {
    enableFailpoints(options.failpoints);
    log.warn("failpoints are on: this agent is for tests only", { failpoints: options.failpoints });
  }

  mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const stateDir = realpathSync(config.state_dir);
  const lockFd = openSync(join(stateDir, "agent.lock"), "a+", 0o600);
  if (!tryLock(lockFd)) {
    closeSync(lockFd);
    throw new PreconditionError(`Another agent is using the state directory "${stateDir}"`);
  }
  writeFileSync(join(stateDir, "agent.pid"), `${process.pid}\n`);
  const socket = config.socket;
  await claimSocket(socket);

  // Orphans of our children, and trees restored by `criu restore -d`, become ours to reap.
  setChildSubreaper();
  // The pods' small init, into its memfd now rather than at the first pod's start.
  if (nativePodInit() === null) log.info("pods start without the small init (built without gcc): slower");

  // This host's CPU as the cluster sees it (less the test-only mask), and the peers' as last seen.
  const mask = new Set(config.cpu.flags_mask);
  const hostFlags = cpuFlags().filter((f) => !mask.has(f));
  if (mask.size) log.warn("acting as if this CPU lacked some of its features (cpu.flags_mask): for tests only", { flags: [...mask].join(",") });
  const store = new PodStore(join(stateDir, "autopod.db"));
  const pods = new PodRuntime({
    stateDir,
    agentKey: agentKeyOf(stateDir),
    bridge: config.network.bridge,
    subnet: config.network.subnet,
    ...(config.network.mode === "routed"
      ? { routed: { lanInterface: config.network.lan_interface, clusterPods: (mayBeUnreachable) => peers.clusterPods(mayBeUnreachable) } }
      : {}),
    layer: config.pods.layer,
    store,
    host: linuxPodHost,
    log: log.child({ part: "pods" }),
    agentFiles: [join(realpathSync(dirname(socket)), basename(socket))],
    cpuPlan: (useBaseline) => {
      const unknown = clusterCpu.unknownPeers();
      if (useBaseline && config.cpu.baseline && unknown.length)
        log.warn("peers whose CPU was never seen are not in the CPU baseline", { peers: unknown.join(",") });
      return clusterCpu.planForPod(useBaseline);
    },
  });
  await pods.setUpHost(config.network.nat);

  // Checkpoint images: chunks in packs under <state>/store, the catalogue beside them.
  const chunks = ChunkStore.open(join(stateDir, "store"));
  // Taken now when there is room, else after the next gc frees some: rm and gc need it on a full disk.
  const reserve = new SpaceReserve(join(stateDir, "store"));
  reserve.take();
  const catalogue = new ImageCatalogue(chunks, { reserve });
  // This host's signing key proves which images it made (docs/trust.md).
  const hostKey = await loadOrCreateHostKey(stateDir);
  const trust = new ImageTrust(chunks.db, hostKey.signer, new HostTrustStore(hostKey.signer.publicKey));
  const legacy = await trust.adoptLegacyList(stateDir, { isNewKey: hostKey.isNew, has: (id) => catalogue.has(id) });
  if (legacy.adopted > 0) log.info("signed the local images of an agent from before image signatures", { images: legacy.adopted });
  if (legacy.ignored > 0) log.warn("ignored a list of local images written after this host's key was made", { images: legacy.ignored });
  ChunkWorkers.configureShared({ threads: config.store.hash_threads, native: config.store.native_hash });
  const checkpointer = new Checkpointer({
    stateDir,
    pods,
    store: chunks,
    catalogue,
    criu: config.criu,
    log: log.child({ part: "checkpoint" }),
    host: mask.size ? { ...linuxCheckpointHost, cpuFlags: () => [...hostFlags] } : linuxCheckpointHost,
    trust,
    isPageTailOn: config.checkpoint.page_tail,
  });
  // The cluster: membership and peers; the peer API listens once this host has joined one.
  const cluster = await Cluster.open(config.peer.tls_dir || join(stateDir, "tls"));
  const clusterCpu = new ClusterCpu(
    join(stateDir, "peer-cpus.json"),
    hostFlags,
    () => cluster.peers().map((p) => p.name),
    config.cpu.baseline,
    (m, f) => log.warn(m, f),
    cpuFlags().filter((f) => mask.has(f)),
  );
  const peers = new PeerDirectory(
    cluster,
    log.child({ part: "peers" }),
    (name, info) => clusterCpu.record(name, info.cpuFlags),
    config.peer.listen.slice(0, config.peer.listen.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1"),
  );
  const migrations = new Migrations({
    ctx: checkpointer.context,
    trust,
    peers,
    hostName: () => cluster.identity?.host ?? "",
    onArrived: (pod, source) => recordArrival(stateDir, pod, source),
  });
  // Migrations, then checkpoints and restores the last agent died in first: they decide those pods' states.
  const heldByMigrations = await migrations.recoverBefore();
  await checkpointer.recover();
  await pods.recover(heldByMigrations);

  // Patch status: the latest report, refreshed on a schedule and when the package database changes.
  const statusPaths = hostPaths({ root: config.status.root });
  // A new report wakes the update cycle (set once it exists): a sentinel that appears starts the cycle after the
  // watch's debounce, not up to policy.check_seconds later.
  let onStatusReport = () => {};
  const status = new StatusService({
    collect: (signal) =>
      collectStatus({ paths: statusPaths, lockTimeoutMs: config.status.lock_timeout_seconds * 1000, signal, cacheDir: statusCacheDir(stateDir) }),
    refreshSeconds: config.status.refresh_seconds,
    watchPaths: statusWatchPaths(statusPaths),
    log: log.child({ part: "status" }),
    onReport: () => onStatusReport(),
  });

  // Evacuation: every running pod off this host, by live migration or suspended to disk, and home again.
  const evacuations = new Evacuations({
    stateDir,
    pods,
    migrate: (name, req, onProgress) => migrations.migrate(name, req, onProgress),
    suspend: async (name) => {
      const r = await checkpointer.checkpoint(name, { leaveRunning: false, excludeVolumes: [] });
      return { image: r.id, freezeMs: r.freezeMs };
    },
    resume: async (image) => {
      await checkpointer.restore(image, {});
    },
    local: async () => ({ criuVersion: (await checkpointer.criu()).version, cpuFlags: hostFlags }),
    peers: {
      names: () => (cluster.identity ? cluster.peers().map((p) => p.name) : []),
      client: (name) => peers.client(name),
    },
    hostName: () => cluster.identity?.host ?? "",
    verdict: () => status.snapshot().report?.verdict ?? null,
    log: log.child({ part: "evacuate" }),
  });

  // The update cycle. A policy that cannot work stops the agent here with its reason (before it serves anything).
  const policy = config.policy;
  if (policy.test_evacuator_file)
    log.warn("policy.test_evacuator_file is set: a fake evacuator that moves nothing; for tests only", { file: policy.test_evacuator_file });
  const update = createUpdateService({
    stateDir,
    policy,
    clusterHost: () => cluster.identity?.host ?? "",
    status: {
      current: () => status.snapshot().report,
      refresh: async () => {
        const s = await status.refresh();
        if (!s.report) throw new Error("the status service has no report");
        return s.report;
      },
    },
    evacuator: policy.test_evacuator_file ? new RecordingTestEvacuator(policy.test_evacuator_file, () => pods.list().map((p) => p.name)) : evacuations,
    run: async (argv, timeoutMs) => {
      const r = await run(argv, { timeoutMs });
      return { exitCode: r.exitCode, output: (r.stdout + r.stderr).slice(-4000), timedOut: r.timedOut };
    },
    bootId,
    log: log.child({ part: "update" }),
  });

  onStatusReport = () => update.cycle.wake();

  const peerApp = createPeerApp({
    cluster,
    images: { catalogue, trust },
    migrations: { migrations, isPeer: (name) => cluster.peers().some((p) => p.name === name) },
    evacuations: {
      evacuations,
      migrations,
      stateDir,
      pod: (name) => pods.list().find((p) => p.name === name) ?? null,
      isPeer: (name) => cluster.peers().some((p) => p.name === name),
    },
    info: peerInfoProvider({ cluster, pods, checkpointer, status, stateDir, cpuFlags: hostFlags }),
    pods: () => {
      const id = cluster.identity;
      if (!id) throw new PreconditionError("This host is not in a cluster");
      return { host: id.host, pods: pods.list().map((p) => ({ name: p.name, address: p.address, live: hasProcesses(p.phase) })) };
    },
    log: log.child({ part: "peer-api" }),
  });
  const peerListener = new PeerListener(cluster, peerApp, config.peer.listen, log.child({ part: "peer-api" }));
  peerListener.start();
  await migrations.recoverAfter();

  const app = createLocalApp({
    pods,
    log,
    routes: [
      (a) => addImageRoutes(a, { checkpointer, catalogue, trust }),
      (a) => addStatusRoutes(a, { status, moreMetrics: () => update.metrics.format() }),
      (a) => addUpdateRoutes(a, { update }),
      (a) => addMigrateRoutes(a, { migrations }),
      (a) => addEvacuateRoutes(a, { evacuations }),
      (a) =>
        addClusterRoutes(a, {
          cluster,
          peers,
          cpu: clusterCpu,
          catalogue,
          trust,
          resolveImage: (ref) => checkpointer.resolveImage(ref),
          listening: () => (peerListener.port === null ? null : config.peer.listen),
        }),
      ...(areFailpointsEnabled() ? [addFailpointRoutes] : []),
    ],
    info: {
      version: VERSION,
      pid: process.pid,
      stateDir,
      socket,
      bridge: config.network.mode === "routed" ? "" : config.network.bridge,
      subnet: config.network.subnet,
    },
  });
  const umask = process.umask(0o177);
  let server: ReturnType<typeof Bun.serve>;
  try {
    // idleTimeout is typed for TCP only, but Bun applies it to unix sockets too.
    // Imports stream in: Bun's default body cap (128 MiB) would refuse any real image.
    const options = { unix: socket, fetch: app.fetch, idleTimeout: IDLE_TIMEOUT_SECONDS, maxRequestBodySize: Number.MAX_SAFE_INTEGER };
    server = Bun.serve(options as unknown as Parameters<typeof Bun.serve>[0]);
  } finally {
    process.umask(umask);
  }
  chmodSync(socket, 0o600);
  status.start(); // the first collection runs in the background
  update.start(); // takes up a cycle the last agent journaled (after a reboot: finishes it), then looks every policy.check_seconds

  // Revocations spread, and the peers' CPUs (for the baseline; kept in a file across restarts) are
  // refreshed, by talking to peers: once a minute is enough, and costs nothing without peers.
  const peerSync = setInterval(() => {
    if (cluster.identity && cluster.peers().length) void peers.statuses().catch(() => {});
  }, PEER_SYNC_INTERVAL_MS);

  // Pods that end, and what CRIU leaves behind when a restore fails after it forked (not pods: no exit status to keep).
  const watch = new PodWatch({
    poll: () => pods.poll(),
    list: () => store.list(),
    orphans: new OrphanReaper(linuxPodHost, pods),
    zombieChildren: () => linuxPodHost.zombieChildren(),
    log,
  });
  store.onChange = () => watch.changed();
  watch.start();

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping = false;
  const stop = async () => {
    if (stopping) return done;
    stopping = true;
    store.onChange = null;
    watch.stop();
    clearInterval(peerSync);
    migrations.stop();
    update.stop();
    status.stop();
    await peerListener.stop();
    await server.stop(true);
    // Releases of just-checkpointed pods finish first (a restarted agent would not redo them).
    await pods.settled();
    try {
      unlinkSync(socket);
    } catch {
      // already gone
    }
    store.close();
    chunks.close();
    closeSync(lockFd);
    log.info("agent stopped; pods keep running");
    resolveDone();
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => void stop());

  log.info("agent listening", { socket, state_dir: stateDir, bridge: config.network.bridge, subnet: config.network.subnet, pods: pods.list().length });
  return { done, stop, evacuations };
}

/** Make the socket path ours: refuse when a live agent answers there or the path is not a socket, remove a stale socket. */
async function claimSocket(socket: string): Promise<void> {
  mkdirSync(dirname(socket), { recursive: true, mode: 0o755 });
  let st: Stats;
  try {
    st = lstatSync(socket);
  } catch {
    return; // nothing there
  }
  // Never delete what is not a socket: a mistyped --socket must not cost a file.
  if (!st.isSocket()) throw new PreconditionError(`Cannot listen on "${socket}": it exists and is not a socket`);
  const alive = await Promise.race([
    new LocalClient(socket).health().then(
      () => true,
      () => false,
    ),
    Bun.sleep(2000).then(() => true),
  ]);
  if (alive) throw new PreconditionError(`Another agent is listening on "${socket}"`);
  unlinkSync(socket);
}
