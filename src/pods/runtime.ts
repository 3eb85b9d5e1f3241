/**
 * PodRuntime: creates, watches, stops and removes pods, and keeps their
 * records. It speaks to the OS only through PodHost. Pods do not depend on
 * the agent: a new agent re-adopts them by pid and start time.
 *
 * Over 600 lines: one state machine (create, stop, checkpoint and restore
 * hand-offs, release, recovery) over one set of records; its steps share the
 * record, the claim on it and the teardown, and are read together.
 */
import { createHash, randomUUID } from "node:crypto";
import { AlreadyExistsError, ConflictError, errorMessage, NotFoundError, PreconditionError, UnavailableError } from "../errors.ts";
import { failpoint } from "../debug/failpoints.ts";
import type { Logger } from "../log.ts";
import type { ExecOptions, ExitStatus, PodHost, PodNetworkMade, PodProcess } from "../platform/pod-host.ts";
import { formatIPv4, formatSubnet, gatewayOf, parseIPv4, parseSubnet, type Subnet } from "./address.ts";
import { childPath } from "./child-path.ts";
import type { ProtectedPaths } from "./host-dirs.ts";
import { assertTransition, hasProcesses } from "./lifecycle.ts";
import {
  formatBytes,
  limitsOf,
  type PodCpu,
  podEnvironment,
  signalName,
  stateLabel,
  type PodRecord,
  type PodRuntimeInfo,
  type PodSpec,
  type PodView,
} from "./pod.ts";
import { withHiddenHwcaps } from "../cluster/cpu-baseline.ts";
import type { PodStore } from "./store.ts";
import { checkPodName, checkRequest, chooseAddress, type CreatePodRequest } from "./validate.ts";

/** The pods of each peer: `live` when it has (or is getting) processes, so holds its address on the LAN. */
/** Each peer's pods; `unreachable` (with no pods) for a peer the caller allowed to be unreachable, saying why. */
export type ClusterPods = Array<{ host: string; pods: Array<{ name: string; address: string; live: boolean }>; unreachable?: string }>;

/** The gateway of every routed pod: the host end of its veth holds it. */
export const ROUTED_GATEWAY = "169.254.1.1";

export interface PodRuntimeOptions {
  stateDir: string;
  /** Short id of this agent, unique per state directory: names its host resources. */
  agentKey: string;
  bridge: string;
  subnet: string;
  /** Routed pod network: the subnet is the cluster's, each pod a /32 routed on its host (docs/cluster.md). */
  routed?: {
    lanInterface: string;
    /**
     * The pods every peer has, with their addresses: allocation and restores keep addresses unique across the cluster.
     * A peer that cannot be asked fails it, unless `mayBeUnreachable(host)` says it need not answer.
     */
    clusterPods(mayBeUnreachable?: (host: string) => boolean): Promise<ClusterPods>;
  };
  layer: "overlay" | "copy";
  store: PodStore;
  host: PodHost;
  log: Logger;
  /** The agent's own files outside the state directory (its socket): no pod gets them. */
  agentFiles?: string[];
  /**
   * What a new pod may use of the CPU: the cluster's baseline, or with `useBaseline` false the host's
   * own features; never waits on a peer. Absent: pods use the host's CPU and record nothing.
   */
  cpuPlan?: (useBaseline: boolean) => PodCpu;
}

/** Short, stable id of an agent, from its state directory. */
export function agentKeyOf(stateDir: string): string {
  return createHash("sha256").update(stateDir).digest("hex").slice(0, 8);
}

const STOP_KILL_WAIT_MS = 10_000;

export class PodRuntime {
  readonly #o: PodRuntimeOptions;
  readonly #subnet: Subnet;
  /** Serialises the choice of names and addresses. */
  #reserving: Promise<unknown> = Promise.resolve();
  /** Pods migrating here, by name: the host they come from, whose copy of the pod holds their address until the handover. */
  readonly #incoming = new Map<string, string>();
  /** Work still going on for pods after their requests were answered (settleLater), by pod. */
  readonly #settling = new Map<string, Promise<void>>();

  constructor(o: PodRuntimeOptions) {
    this.#o = o;
    const subnet = parseSubnet(o.subnet);
    if (!subnet) throw new PreconditionError(`Invalid pod subnet "${o.subnet}"`);
    this.#subnet = o.routed ? { ...subnet, routed: true } : subnet;
  }

  get gatewayCidr(): string {
    return `${formatIPv4(gatewayOf(this.#subnet))}/${this.#subnet.prefix}`;
  }

  /** Bridge and NAT on this host for the agent's pods; or, routed, forwarding and proxy ARP on the LAN interface. */
  async setUpHost(nat: boolean): Promise<void> {
    const routed = this.#o.routed;
    try {
      await this.#o.host.setUpNetwork({
        bridge: this.#o.bridge,
        gatewayCidr: this.gatewayCidr,
        subnet: formatSubnet(this.#subnet),
        nat,
        natTable: `autopod_${this.#o.agentKey}`,
        ...(routed ? { routed: { lanInterface: routed.lanInterface } } : {}),
      });
    } catch (e) {
      // Routed: every pod's network sets the LAN interface up again; it may appear later.
      if (!routed) throw e;
      this.#o.log.warn("the LAN interface is not ready; pods will set it up when they start", { lan_interface: routed.lanInterface, error: errorMessage(e) });
    }
  }

  /** What createNetwork needs beyond the pod's runtime info. */
  #networkMode(): { routed?: { lanInterface: string } } {
    return this.#o.routed ? { routed: { lanInterface: this.#o.routed.lanInterface } } : {};
  }

  /**
   * Routed network: refuse `address` when a pod of another host holds it (has
   * or is getting processes), naming the host; a peer that cannot be asked
   * is a refusal too, as its pods are unknown. Nothing to ask on a bridge.
   */
  async checkAddressInCluster(address: string, pod: string): Promise<void> {
    if (!this.#o.routed) return;
    const ip = address.split("/")[0];
    for (const peer of await this.#clusterPodsFor(pod)) {
      const holder = peer.pods.find((p) => p.live && p.address.split("/")[0] === ip && !this.#isIncomingFrom(peer.host, p.name));
      if (holder) {
        throw new ConflictError(
          `Address ${ip} of pod "${pod}" is in use on host "${peer.host}" by its pod "${holder.name}": stop or checkpoint it there first, or restore with another --ip`,
        );
      }
    }
  }

  /**
   * Routed network, a pod about to arrive here (restoring, which the peers see
   * as live): ask the peers again before its address is announced. Two hosts
   * restoring one address at once both passed the first check; each asks
   * again only once its own pod is visible, so at least one sees the other and
   * backs off (both may: then both can try again).
   */
  async #recheckAddress(spec: PodSpec): Promise<void> {
    if (!this.#o.routed) return;
    const ip = spec.address.split("/")[0];
    for (const peer of await this.#clusterPodsFor(spec.name)) {
      // A migration's source holds the address until the handover: not a conflict.
      const holder = peer.pods.find((p) => p.live && p.address.split("/")[0] === ip && !this.#isIncomingFrom(peer.host, p.name));
      if (holder) {
        throw new ConflictError(
          `Address ${ip} of pod "${spec.name}" is being taken on host "${peer.host}" by its pod "${holder.name}" at the same time: restore it there or, once that has settled, here`,
        );
      }
    }
  }

  /** A migration brings pod `name` from host `source`: that host's copy may hold the pod's address until the handover. */
  expectIncoming(name: string, source: string): void {
    this.#incoming.set(name, source);
  }

  endIncoming(name: string): void {
    this.#incoming.delete(name);
  }

  #isIncomingFrom(host: string, pod: string): boolean {
    return this.#incoming.get(pod) === host;
  }

  /**
   * The peers' pods, to check `pod`'s address. For a migration arriving here only its source must answer: the
   * source holds the address live, and no host takes an address a peer it cannot ask might hold, so no third
   * host holds it; a third host that is down (say, the peer an evacuation tried first) then blocks nothing.
   */
  async #clusterPodsFor(pod: string): Promise<ClusterPods> {
    const source = this.#incoming.get(pod);
    const peers = await this.#o.routed!.clusterPods(source === undefined ? undefined : (host) => host !== source);
    for (const p of peers)
      if (p.unreachable !== undefined)
        this.#o.log.warn("a peer could not be asked whether it holds an arriving pod's address; its source does", {
          pod,
          source,
          peer: p.host,
          error: p.unreachable,
        });
    return peers;
  }

  /** Routed: announce the pod's address from this host again (a migration that was aborted after the peer announced it). */
  async announce(name: string): Promise<void> {
    const routed = this.#networkMode().routed;
    if (!routed) return;
    await this.#o.host.announceAddress(routed.lanInterface, this.record(name).spec.address.split("/")[0]!);
  }

  list(): PodView[] {
    return this.#o.store.list().map((r) => this.#view(r));
  }

  get(name: string): PodView {
    return this.#view(this.record(name));
  }

  /** The pod's record; NotFoundError when there is none. */
  record(name: string): PodRecord {
    checkPodName(name);
    const r = this.#o.store.get(name);
    if (!r) throw new NotFoundError(`No pod named "${name}"`);
    return r;
  }

  /** What no pod may get; a restore may get the volumes and bases the checkpointer put in the state directory. */
  #protected(isRestore: boolean): ProtectedPaths {
    const { stateDir, agentFiles } = this.#o;
    return { stateDir, agentFiles, agentGiven: isRestore ? [childPath(stateDir, "volumes"), childPath(stateDir, "bases")] : [] };
  }

  /** Start a pod; resolves once its command runs. On failure nothing is left behind. */
  async create(req: CreatePodRequest): Promise<PodView> {
    const { host, store, log } = this.#o;
    // Milliseconds per step, in the log: where start-up time goes.
    const ms: Record<string, number> = {};
    let t = performance.now();
    const lap = (step: string) => {
      const now = performance.now();
      ms[step] = Math.round((now - t) * 10) / 10;
      t = now;
    };
    const checked = checkRequest(req, host, {
      layer: this.#o.layer,
      hasMemoryCgroup: host.cgroupDir(this.#o.agentKey, req.name) !== null,
      protect: this.#protected(false),
    });
    const base = this.#withCpu(checked, req.cpuBaseline !== false);
    const record = await this.#reserveInCluster(base, req.address);
    const rt = record.runtime;
    lap("validate_reserve");
    try {
      // The root, the cgroup and the network are independent: made at once (the network is `ip` spawns).
      // Both settle before a failure is thrown, so the teardown never races a half-made network.
      let net: PodNetworkMade | undefined;
      const made = await Promise.allSettled([
        (async () => {
          await host.prepareLayer(record.spec, rt);
          if (rt.cgroup) host.createCgroup(rt.cgroup, limitsOf(record.spec));
          ms.layer_cgroup = Math.round((performance.now() - t) * 10) / 10;
        })(),
        host
          .createNetwork({
            netns: rt.netns,
            hostVeth: rt.hostVeth,
            bridge: rt.bridge,
            address: record.spec.address,
            gateway: rt.gateway,
            mayLeavePodSide: true,
            ...this.#networkMode(),
          })
          .then((made) => {
            net = made;
            ms.network = Math.round((performance.now() - t) * 10) / 10;
          }),
      ]);
      for (const m of made) if (m.status === "rejected") throw m.reason;
      lap("prepare"); // layer_cgroup and network, at once
      const { pid, startTime, ms: launchMs } = await host.launch(record.spec, rt, net);
      lap("launch");
      Object.assign(ms, launchMs);
      Object.assign(record, { state: "running", pid, startTime, startedAt: new Date().toISOString() });
      store.update(record);
      lap("record");
      log.info("pod started", { pod: record.spec.name, pid, address: record.spec.address, ms });
      return this.#view(record);
    } catch (e) {
      await this.#teardown(record).catch((te) => log.warn("cleanup after a failed start was incomplete", { pod: req.name, error: errorMessage(te) }));
      store.delete(record.spec.name);
      throw new PreconditionError(`Cannot start pod "${req.name}": ${errorMessage(e)}`, { cause: e });
    }
  }

  /** A new pod held to the CPU features it may use: its GLIBC_TUNABLES turns off in glibc what it must not choose. */
  #withCpu(spec: Omit<PodSpec, "address">, useBaseline: boolean): Omit<PodSpec, "address"> {
    const plan = this.#o.cpuPlan?.(useBaseline);
    if (!plan) return spec;
    const tunables = withHiddenHwcaps(spec.env.GLIBC_TUNABLES, plan.hidden);
    const env = tunables === undefined ? spec.env : { ...spec.env, GLIBC_TUNABLES: tunables };
    if (plan.hidden.length) this.#o.log.info("pod starts with the cluster's CPU baseline", { pod: spec.name, hidden: plan.hidden.join(",") });
    return { ...spec, env, cpu: plan };
  }

  /**
   * Record a pod that arrives as a checkpoint (a migration): its name and
   * address are taken, nothing runs until prepareRestore and adoptRestored.
   */
  async registerCheckpointed(spec: PodSpec): Promise<PodView> {
    const checked = checkRequest(spec, this.#o.host, {
      layer: this.#o.layer,
      hasMemoryCgroup: this.#o.host.cgroupDir(this.#o.agentKey, spec.name) !== null,
      protect: this.#protected(true),
    });
    // Its processes chose their code paths where they started: what they may use travels with them.
    const base = spec.cpu ? { ...checked, cpu: spec.cpu } : checked;
    const elsewhere = await this.#addressesElsewhere(spec.address, spec.name, false);
    await failpoint("pods.address-checked");
    const record = await this.#reserve(base, spec.address, "checkpointed", elsewhere);
    try {
      await this.#o.host.prepareLayer(record.spec, record.runtime);
    } catch (e) {
      this.#o.store.delete(spec.name);
      throw e;
    }
    return this.#view(record);
  }

  /**
   * Routed network: the addresses the other hosts' pods have, to allocate
   * around (every pod they record, checkpointed ones too); an asked-for
   * address a live pod elsewhere holds is refused, naming the host (with
   * `strict`, as for a new pod, one any pod elsewhere records is refused too).
   */
  async #addressesElsewhere(asked: string | undefined, pod: string, strict: boolean): Promise<Set<number>> {
    const used = new Set<number>();
    if (!this.#o.routed) return used;
    const peers = await this.#clusterPodsFor(pod);
    for (const peer of peers) {
      for (const p of peer.pods) {
        const ip = parseIPv4(p.address.split("/")[0] ?? "");
        if (ip !== null) used.add(ip);
      }
    }
    if (asked !== undefined) {
      const ip = asked.split("/")[0];
      for (const peer of peers) {
        const holder = peer.pods.find((p) => (strict || p.live) && p.address.split("/")[0] === ip && !this.#isIncomingFrom(peer.host, p.name));
        if (holder)
          throw new ConflictError(
            `Address ${ip} for pod "${pod}" is in use on host "${peer.host}" by its pod "${holder.name}"${holder.live ? "" : " (not running)"}: choose another with --ip`,
          );
      }
      // Allocation skips the others' addresses; an address asked for only needs no live holder.
      used.clear();
    }
    return used;
  }

  /**
   * Reserve a new pod's name and address; routed, around the addresses of the
   * other hosts' pods. Two hosts allocating at once could pick the same one:
   * after the reservation (visible to the peers from then on) the peers are
   * asked again, and a host that sees its new address taken elsewhere gives it
   * up and picks another, so at most one of them keeps it. An address asked
   * for is rechecked the same way, and given up with an error.
   */
  async #reserveInCluster(base: Omit<PodSpec, "address">, asked: string | undefined): Promise<PodRecord> {
    const avoid = new Set<number>();
    for (let attempt = 0; ; attempt++) {
      const elsewhere = await this.#addressesElsewhere(asked, base.name, true);
      for (const a of avoid) elsewhere.add(a);
      const record = await this.#reserve(base, asked, "creating", elsewhere);
      if (!this.#o.routed) return record;
      const ip = record.spec.address.split("/")[0]!;
      if (asked !== undefined) {
        await this.#recheckAsked(record, ip);
        return record;
      }
      const clash = (await this.#o.routed.clusterPods().catch(() => [])).some((peer) => peer.pods.some((p) => p.address.split("/")[0] === ip));
      if (!clash) return record;
      this.#o.store.delete(base.name);
      if (attempt === 4) throw new UnavailableError(`Cannot reserve an address for pod "${base.name}": other hosts took each one tried (last ${ip})`);
      avoid.add(parseIPv4(ip)!);
      await Bun.sleep(Math.random() * 50);
    }
  }

  /**
   * An address asked for, reserved here (the peers see the pod, creating):
   * ask them again, as a host reserving it at the same time passed the first
   * check too. Either both back off, or one sees the other first.
   */
  async #recheckAsked(record: PodRecord, ip: string): Promise<void> {
    const name = record.spec.name;
    try {
      for (const peer of await this.#o.routed!.clusterPods()) {
        const holder = peer.pods.find((p) => p.address.split("/")[0] === ip);
        if (holder)
          throw new ConflictError(
            `Address ${ip} for pod "${name}" was taken on host "${peer.host}" by its pod "${holder.name}" at the same time: choose another with --ip`,
          );
      }
    } catch (e) {
      this.#o.store.delete(name);
      throw e;
    }
  }

  /** Take the name and the address in one step, so two creates cannot both get them. */
  async #reserve(
    base: Omit<PodSpec, "address">,
    asked: string | undefined,
    state: "creating" | "checkpointed" = "creating",
    elsewhere: ReadonlySet<number> = new Set(),
  ): Promise<PodRecord> {
    const turn = this.#reserving.then(() => {
      const { store, host, agentKey } = this.#o;
      if (store.get(base.name)) throw new AlreadyExistsError(`Pod "${base.name}" already exists`);
      const used = new Set(store.list().map((r) => parseIPv4(r.spec.address.split("/")[0]!)!));
      for (const a of elsewhere) used.add(a);
      const address = chooseAddress(asked, this.#subnet, used);
      const spec: PodSpec = { ...base, address };
      const id = randomUUID();
      const rootKind = this.#o.layer;
      const runtime: PodRuntimeInfo = {
        netns: `autopod-${agentKey}-${spec.name}`,
        hostVeth: `ap${createHash("sha256").update(`${agentKey}/${id}`).digest("hex").slice(0, 13)}`,
        bridge: this.#o.routed ? "" : this.#o.bridge,
        gateway: this.#o.routed ? ROUTED_GATEWAY : formatIPv4(gatewayOf(this.#subnet)),
        cgroup: host.cgroupDir(agentKey, spec.name),
        layerDir: childPath(this.#o.stateDir, "pods", spec.name),
        rootKind,
        mounts: host.mountLayout(spec, rootKind),
      };
      const record: PodRecord = { id, spec, state, pid: null, startTime: null, createdAt: new Date().toISOString(), startedAt: null, exit: null, runtime };
      store.insert(record);
      return record;
    });
    this.#reserving = turn.catch(() => {});
    return turn;
  }

  /** SIGTERM, then SIGKILL after `timeoutSeconds` (pid 1 ignores signals it has no handler for). */
  async stop(name: string, timeoutSeconds: number): Promise<PodView> {
    let r = this.record(name);
    if (r.state === "stopped" || r.state === "exited") return this.#view(r);
    if (r.state !== "stopping") assertTransition(name, r.state, "stopping", "stop");
    r.state = "stopping";
    this.#o.store.update(r);
    const pid = r.pid!;
    this.#o.host.signal(pid, "SIGTERM");
    if (!(await this.#waitForExit(name, timeoutSeconds * 1000))) {
      this.#o.log.info("pod did not stop in time; killing it", { pod: name, timeout_s: timeoutSeconds });
      this.#o.host.signal(pid, "SIGKILL");
      if (!(await this.#waitForExit(name, STOP_KILL_WAIT_MS))) throw new UnavailableError(`Pod "${name}" (pid ${pid}) did not die after SIGKILL`);
    }
    r = this.record(name);
    return this.#view(r);
  }

  /**
   * Run `work` for a pod after its request was answered (a checkpointed pod's
   * processes reaped and its resources released). What touches the pod's
   * resources waits for it first: restore, remove, release, agent shutdown.
   * A failure is logged; the work it would have done is done again by
   * whatever comes next (they all tolerate what is already gone).
   */
  settleLater(name: string, work: () => Promise<void>): void {
    const before = this.#settling.get(name) ?? Promise.resolve();
    const p: Promise<void> = before
      .then(work)
      .catch((e: unknown) => this.#o.log.warn("finishing up after a pod's request failed", { pod: name, error: errorMessage(e) }))
      .finally(() => {
        if (this.#settling.get(name) === p) this.#settling.delete(name);
      });
    this.#settling.set(name, p);
  }

  /** Resolves when the pod's (or, without a name, every pod's) settleLater work is done. */
  async settled(name?: string): Promise<void> {
    if (name !== undefined) await this.#settling.get(name);
    else await Promise.all(this.#settling.values());
  }

  /** Remove the pod and everything the agent made for it; never its volumes or base. */
  async remove(name: string, force: boolean): Promise<void> {
    await this.settled(name);
    let r = this.record(name);
    if (r.state === "creating") throw new ConflictError(`Pod "${name}" is being created`);
    if (hasProcesses(r.state) && !force) throw new ConflictError(`Pod "${name}" is ${r.state}: stop it first, or use --force`);
    assertTransition(name, r.state, "removing", "remove");
    if (r.pid !== null) {
      this.#o.host.signal(r.pid, "SIGKILL");
      if (!(await this.#waitForExit(name, STOP_KILL_WAIT_MS))) throw new UnavailableError(`Pod "${name}" (pid ${r.pid}) did not die after SIGKILL`);
      r = this.record(name);
    }
    this.#o.store.update({ ...r, state: "removing" });
    await this.#teardown(r);
    this.#o.store.delete(name);
    this.#o.log.info("pod removed", { pod: name });
  }

  /** The pod's log file and whether more may come. */
  logs(name: string): { file: { dir: string; rel: string }; isLive: () => boolean } {
    const r = this.record(name);
    return {
      file: this.#o.host.logFile(r.runtime),
      isLive: () => {
        const now = this.#o.store.get(name);
        return now !== null && now.id === r.id && hasProcesses(now.state);
      },
    };
  }

  /** Run a command in the running pod (with the caller's input, in a terminal of its own, as asked). */
  exec(name: string, cmd: string[], opts: ExecOptions = {}): PodProcess {
    const r = this.record(name);
    if (r.state !== "running" || r.pid === null) throw new ConflictError(`Cannot exec in pod "${name}": it is ${stateLabel(r)}`);
    if (cmd.length === 0 || !cmd[0]) throw new ConflictError("No command to exec");
    return this.#o.host.execInPod({ pid: r.pid, cmd, env: podEnvironment(r.spec), cgroup: r.runtime.cgroup, ...opts });
  }

  /**
   * Check every pod that has processes: reap the ones that exited (our
   * children), or notice it in /proc (pods adopted from an earlier agent).
   */
  poll(): void {
    for (const r of this.#o.store.list()) this.#check(r);
  }

  /** Pids this runtime reaps (every pod's pid 1), or null while a pod is between states and may yet claim one. */
  claimedPids(): ReadonlySet<number> | null {
    const pids = new Set<number>();
    for (const r of this.#o.store.list()) {
      if (r.state === "creating" || r.state === "checkpointing" || r.state === "restoring" || r.state === "removing" || r.state === "stopping") return null;
      if (r.pid !== null) pids.add(r.pid);
    }
    return pids;
  }

  /** At start-up: re-adopt live pods, record those that ended meanwhile, finish interrupted work. */
  async recover(skip: ReadonlySet<string> = new Set()): Promise<void> {
    const { store, host, log } = this.#o;
    for (const r of store.list()) {
      // Held by a migration's recovery (src/migrate/recovery.ts): its journal decides.
      if (skip.has(r.spec.name)) continue;
      if (r.state === "creating" || r.state === "removing") {
        log.info(r.state === "creating" ? "removing a pod whose creation was interrupted" : "finishing an interrupted removal", { pod: r.spec.name });
        await this.#teardown(r).catch((e) => log.warn("cleanup was incomplete", { pod: r.spec.name, error: errorMessage(e) }));
        store.delete(r.spec.name);
        continue;
      }
      if (r.state === "checkpointed") {
        // An agent killed right after a checkpoint answered leaves the pod's network and cgroup (releaseWhenGone).
        await this.#release(r.spec.name).catch((e) => log.warn("releasing a checkpointed pod was incomplete", { pod: r.spec.name, error: errorMessage(e) }));
        continue;
      }
      if (!hasProcesses(r.state)) continue;
      if (r.pid === null) {
        // A restore that never got a process: the checkpoint is still there; what was made for it (network, cgroup) goes.
        if (r.state === "restoring") {
          store.update({ ...r, state: "checkpointed" });
          await this.#release(r.spec.name).catch((e) =>
            log.warn("releasing a pod whose restore was interrupted was incomplete", { pod: r.spec.name, error: errorMessage(e) }),
          );
        }
        continue;
      }
      const id = host.processIdentity(r.pid);
      if (id && id.startTime === r.startTime && id.exited === null) {
        // Interrupted stops and checkpoints leave a running pod behind.
        if (r.state !== "running") store.update({ ...r, state: "running" });
        log.info("re-adopted pod", { pod: r.spec.name, pid: r.pid });
      } else {
        this.#check(r);
      }
    }
  }

  /** Reap or notice the end of one pod; synchronous, so checks never interleave. */
  #check(r: PodRecord): void {
    if (r.pid === null || !hasProcesses(r.state) || r.state === "creating") return;
    const reaped = this.#o.host.reap(r.pid);
    if (reaped === null) return;
    let status: ExitStatus = reaped === "not-child" ? { code: null, signal: null } : reaped;
    let reason: string | null = null;
    if (reaped === "not-child") {
      const id = this.#o.host.processIdentity(r.pid);
      if (id && id.startTime === r.startTime) {
        if (id.exited === null) return; // alive: adopted from an earlier agent
        status = id.exited;
      } else {
        reason = "ended while no agent was watching";
      }
    }
    this.#recordExit(r, status, reason);
  }

  #recordExit(r: PodRecord, status: ExitStatus, reason: string | null): void {
    const mem = r.runtime.cgroup ? this.#o.host.readMemory(r.runtime.cgroup) : null;
    if (mem && mem.oomKills > 0) {
      const limit = mem.limit === null ? "" : ` of ${formatBytes(mem.limit)}`;
      reason =
        status.signal === 9
          ? `OOM-killed: it exceeded its memory limit${limit}`
          : `the OOM killer killed ${mem.oomKills} of its processes (memory limit${limit})`;
    } else if (status.signal !== null && reason === null) {
      reason = `killed by ${signalName(status.signal)}`;
    }
    const exit = { code: status.code, signal: status.signal, reason, at: new Date().toISOString() };
    // A pod that ends while checkpointing keeps that state: endCheckpoint decides what follows.
    const state = r.state === "stopping" ? "stopped" : r.state === "running" ? "exited" : r.state;
    const updated: PodRecord = { ...r, state, exit, pid: null, startTime: null };
    this.#o.store.update(updated);
    this.#o.log.info("pod ended", { pod: r.spec.name, state: stateLabel(updated), reason });
    // Routed: a pod that ended leaves the host, so does its route (the host stops answering ARP for it).
    if (this.#o.routed && (state === "stopped" || state === "exited")) {
      const name = r.spec.name;
      this.settleLater(name, async () => {
        const now = this.#o.store.get(name);
        if (now && now.id === r.id && (now.state === "stopped" || now.state === "exited")) await this.#o.host.deleteNetwork(now.runtime);
      });
    }
  }

  /** Poll until the pod's processes are gone (true) or the time is up (false). */
  async #waitForExit(name: string, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    for (;;) {
      const r = this.#o.store.get(name);
      if (r) this.#check(r);
      const now = this.#o.store.get(name);
      if (!now || !hasProcesses(now.state) || now.pid === null) return true;
      if (performance.now() >= deadline) return false;
      await Bun.sleep(20);
    }
  }

  /** Undo everything create made; what is already gone is fine. */
  async #teardown(r: PodRecord): Promise<void> {
    const { host } = this.#o;
    const rt = r.runtime;
    // Anything still in the pod's cgroup (an exec, a half-started pod) goes with it.
    if (rt.cgroup) for (const pid of host.cgroupPids(rt.cgroup)) host.signal(pid, "SIGKILL");
    await host.deleteNetwork(rt);
    await host.removeLayer(rt);
    if (rt.cgroup) await host.removeCgroup(rt.cgroup);
  }

  #view(r: PodRecord): PodView {
    const live = hasProcesses(r.state);
    const mem = live && r.runtime.cgroup ? this.#o.host.readMemory(r.runtime.cgroup) : null;
    const use = live && r.runtime.cgroup ? this.#o.host.readUsage(r.runtime.cgroup) : { cpuSeconds: null, pids: null };
    return {
      name: r.spec.name,
      state: stateLabel(r),
      phase: r.state,
      pid: live ? r.pid : null,
      address: r.spec.address,
      startedAt: r.startedAt,
      uptimeSeconds: live && r.startedAt ? Math.max(0, Math.round((Date.now() - Date.parse(r.startedAt)) / 1000)) : null,
      rootfs: r.spec.rootfs,
      memoryBytes: mem?.current ?? null,
      memoryLimitBytes: r.spec.memoryBytes,
      cpuSeconds: use.cpuSeconds,
      cpuLimit: r.spec.cpus ?? null,
      pids: use.pids,
      pidsLimit: r.spec.pidsMax ?? null,
      exitCode: r.exit?.code ?? null,
      signal: r.exit?.signal ?? null,
      reason: r.exit?.reason ?? null,
      cmd: r.spec.cmd,
      cpuHidden: r.spec.cpu?.hidden ?? [],
    };
  }

  // ---- For checkpoint and restore (CRIU) -------------------------------------------------

  /** The running pod's pid 1 on the host and its net namespace, as CRIU dump needs them. */
  target(name: string): { pid: number; netnsPath: string; netnsInode: number; record: PodRecord } {
    const r = this.record(name);
    if (r.pid === null || !hasProcesses(r.state)) throw new ConflictError(`Pod "${name}" has no processes: it is ${stateLabel(r)}`);
    return { pid: r.pid, netnsPath: this.#o.host.netnsPath(r.runtime.netns), netnsInode: this.#o.host.netnsInode(r.runtime.netns), record: r };
  }

  /** The pod's net namespace, whether or not it has processes (it may not exist after releaseCheckpointed). */
  target0(name: string): { netnsPath: string; record: PodRecord } {
    const r = this.record(name);
    return { netnsPath: this.#o.host.netnsPath(r.runtime.netns), record: r };
  }

  /** Bytes of memory the pod's processes use now, or null when it has none or no cgroup. */
  memoryOf(name: string): number | null {
    const r = this.record(name);
    return hasProcesses(r.state) && r.runtime.cgroup ? (this.#o.host.readMemory(r.runtime.cgroup)?.current ?? null) : null;
  }

  /**
   * Free what a checkpointed pod holds on this host while it runs nowhere: its
   * net namespace and veth, its cgroup, and the root mounted for a restore.
   * Its record, address and layer stay, so it can be restored (prepareRestore
   * makes them again) or removed.
   */
  async releaseCheckpointed(name: string): Promise<void> {
    await this.settled(name);
    await this.#release(name);
  }

  /**
   * After a checkpoint killed the pod's (stopped) processes, and marked it
   * checkpointed: reap pid 1 once it is gone, then release what the pod holds,
   * after the answer (settleLater): freeing a big pod's memory and its
   * network takes tens of milliseconds nobody needs to wait for.
   */
  releaseWhenGone(name: string, pid: number): void {
    this.settleLater(name, async () => {
      const { host } = this.#o;
      for (let i = 0; i < 2000; i++) {
        const reaped = host.reap(pid);
        if (reaped !== null && reaped !== "not-child") break;
        if (reaped === "not-child") {
          const id = host.processIdentity(pid);
          if (id === null || id.exited !== null) break;
        }
        await Bun.sleep(5);
      }
      await failpoint("pods.release-checkpointed");
      await this.#release(name);
    });
  }

  async #release(name: string): Promise<void> {
    const r = this.record(name);
    if (r.state !== "checkpointed") throw new ConflictError(`Cannot release pod "${name}": it is ${r.state}, not checkpointed`);
    const { host } = this.#o;
    const rt = r.runtime;
    if (rt.cgroup) for (const pid of host.cgroupPids(rt.cgroup)) host.signal(pid, "SIGKILL");
    await host.unmountRootOnHost(rt);
    await host.deleteNetwork(rt);
    if (rt.cgroup) await host.removeCgroup(rt.cgroup);
  }

  /** Mark a running pod as being checkpointed: stop, rm and exec refuse it until endCheckpoint. */
  beginCheckpoint(name: string): PodRecord {
    const r = this.record(name);
    assertTransition(name, r.state, "checkpointing", "checkpoint");
    const updated: PodRecord = { ...r, state: "checkpointing" };
    this.#o.store.update(updated);
    return updated;
  }

  /**
   * End a checkpoint: "running" when the pod was left running (or the dump
   * failed), "checkpointed" when the dump ended its processes.
   */
  endCheckpoint(name: string, outcome: "running" | "checkpointed"): PodRecord {
    const r = this.record(name);
    if (r.state !== "checkpointing") throw new ConflictError(`Pod "${name}" is not being checkpointed: it is ${r.state}`);
    if (r.pid !== null) this.#check(r); // it may have ended during the dump: reap it
    const now = this.record(name);
    if (outcome === "checkpointed") {
      // The dump's SIGKILL is how a checkpoint ends, not an exit worth showing.
      this.#o.store.update({ ...now, state: "checkpointed", pid: null, startTime: null, exit: null });
    } else {
      // Left running, unless it ended meanwhile.
      this.#o.store.update({ ...now, state: now.pid === null ? "exited" : "running" });
    }
    return this.record(name);
  }

  /**
   * Make a checkpointed pod's net namespace (locked) and cgroup again without
   * starting anything; then mountRestoreRoot, once its layer is in place, for
   * `criu restore --root ROOT` to put processes in.
   */
  async prepareRestore(name: string): Promise<{ netnsPath: string; cgroup: string | null; record: PodRecord }> {
    await this.settled(name);
    const r = this.record(name);
    assertTransition(name, r.state, "restoring", "restore");
    const { host } = this.#o;
    const rt = r.runtime;
    const restoring: PodRecord = { ...r, state: "restoring" };
    this.#o.store.update(restoring);
    try {
      await this.#recheckAddress(r.spec);
      // CPU and process limits come after CRIU (adoptRestored): throttled, its restore would be the pod's freeze time, and its own processes would count.
      if (rt.cgroup) host.createCgroup(rt.cgroup, { memoryBytes: r.spec.memoryBytes, cpus: null, pidsMax: null });
      await host.deleteNetwork(rt);
      await host.createNetwork({
        netns: rt.netns,
        hostVeth: rt.hostVeth,
        bridge: rt.bridge,
        address: r.spec.address,
        gateway: rt.gateway,
        isLocked: true,
        ...this.#networkMode(),
      });
      return { netnsPath: host.netnsPath(rt.netns), cgroup: rt.cgroup, record: restoring };
    } catch (e) {
      this.#o.store.update({ ...r, state: "checkpointed" });
      throw e;
    }
  }

  /** Mount the root of a pod being restored (prepareRestore) over its layer; returns where. */
  async mountRestoreRoot(name: string): Promise<string> {
    const r = this.record(name);
    if (r.state !== "restoring") throw new ConflictError(`Pod "${name}" is not being restored: it is ${r.state}`);
    return this.#o.host.mountRootOnHost(r.spec, r.runtime);
  }

  /** Record the restored process tree's pid 1 (a child of ours after `criu restore -d`): the pod runs again. */
  adoptRestored(name: string, pid: number): PodView {
    const r = this.record(name);
    assertTransition(name, r.state, "running", "adopt a process for");
    const id = this.#o.host.processIdentity(pid);
    if (!id) throw new NotFoundError(`No process ${pid} to adopt for pod "${name}"`);
    if (r.runtime.cgroup) this.#o.host.limitCgroup(r.runtime.cgroup, limitsOf(r.spec));
    const updated: PodRecord = { ...r, state: "running", pid, startTime: id.startTime, startedAt: new Date().toISOString(), exit: null };
    this.#o.store.update(updated);
    return this.#view(updated);
  }

  /** A failed restore: back to checkpointed, with the half-made resources kept for the next try. */
  abortRestore(name: string): void {
    const r = this.record(name);
    if (r.state === "restoring") this.#o.store.update({ ...r, state: "checkpointed", pid: null, startTime: null });
  }
}
