/**
 * Evacuating this host and bringing its pods home (see index.ts). Evacuation
 * never kills a pod: a pod moves only by live migration (which leaves it
 * running on exactly one host at every failure) or by a local checkpoint
 * (whose failure leaves it running here); anything else leaves it running
 * here, with the reason in the report.
 */
import { ConflictError, errorMessage, InvalidArgumentError, NotFoundError, PreconditionError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MigrateReport, MigrateRequest, MigrationProgress } from "../migrate/index.ts";
import type { PeerFacts, PeerPodList } from "../migrate/peer.ts";
import type { PodView } from "../pods/pod.ts";
import type { EvacuatedPod, EvacuateRequest, EvacuationReport, MigrationAttempt, ReturnReport } from "./index.ts";
import { FreezeTurns } from "./freeze-turns.ts";
import { type Candidate, diskNeedOf, type LocalFacts, type PeerMaintenance, type Placement, planEvacuation, type PodToPlace } from "./placement.ts";
import { type AwayPod, readRecord, recordAway, recordHome, writeRecord } from "./record.ts";

/** Migrations at once unless asked otherwise: one pod's dump and restore overlap the next one's transfer (bench/evacuate.ts). */
export const DEFAULT_PARALLEL = 2;
export const MAX_PARALLEL = 16;
/** Pre-copy rounds at most per pod, as `autopod migrate` by default. */
const MAX_ROUNDS = 8;
/** Migrations at most per pod: its planned peer and, when that fails, up to two others. */
const MAX_ATTEMPTS = 3;

export interface EvacuateEvent {
  message: string;
  pod?: string;
}

/** What a peer says of its maintenance (GET /v1/maintenance). */
export interface MaintenanceAnswer {
  host: string;
  verdict: string | null;
  maintenance: PeerMaintenance | null;
}

/** What a pod's return reports (the peer's migration of it back). */
export interface ReturnedPod {
  pod: string;
  freezeMs: number;
  bytesSent: number;
  totalMs: number;
}

export interface EvacuationPeer {
  info(): Promise<PeerFacts & { verdict: string | null }>;
  pods(): Promise<PeerPodList>;
  /** Null when the peer has no such route (an older agent): its verdict from info counts alone. */
  maintenance(): Promise<MaintenanceAnswer | null>;
  /** Ask the peer to migrate `pod` back to `origin` (this host). */
  returnPod(origin: string, pod: string): Promise<ReturnedPod>;
}

export interface EvacuationPeers {
  names(): string[];
  /** NotFoundError for an unknown peer. */
  client(name: string): EvacuationPeer;
}

export interface EvacuationsDeps {
  stateDir: string;
  pods: { list(): PodView[] };
  migrate(name: string, req: MigrateRequest, onProgress: (p: MigrationProgress) => void): Promise<MigrateReport>;
  /** Checkpoint the pod, stopping it: it stays "checkpointed" here with its image. */
  suspend(name: string): Promise<{ image: string; freezeMs: number }>;
  /** Restore a suspended pod from its image. */
  resume(image: string): Promise<void>;
  local(): Promise<LocalFacts>;
  peers: EvacuationPeers;
  /** This host's name in its cluster; "" when it is in none. */
  hostName(): string;
  /** This host's own patch verdict, for peers that ask. */
  verdict(): string | null;
  log: Logger;
}

type OnEvent = (e: EvacuateEvent) => void;

export class Evacuations {
  #isEvacuating = false;
  #isReturning = false;
  #declared: PeerMaintenance | null = null;

  constructor(readonly deps: EvacuationsDeps) {}

  /** What this host tells peers that would place pods on it. */
  maintenance(): MaintenanceAnswer {
    let m: PeerMaintenance | null = this.#isEvacuating ? "evacuating" : this.#declared;
    if (m === null && this.awayPods().length > 0) m = "away";
    return { host: this.deps.hostName(), verdict: this.deps.verdict(), maintenance: m };
  }

  /** The update cycle says what it does (e.g. "updating"), so no peer sends pods here meanwhile; null when done. */
  declareMaintenance(state: PeerMaintenance | null): void {
    this.#declared = state;
  }

  /** The pods sent away and not yet home. */
  awayPods(): AwayPod[] {
    try {
      return readRecord(this.deps.stateDir);
    } catch {
      return [];
    }
  }

  /** Forget where the pods went (they stay there): for a cycle that does not bring them home. */
  forget(): void {
    writeRecord(this.deps.stateDir, []);
  }

  /** Move every running pod off this host; see the file's comment for what it never does. */
  async evacuate(req: EvacuateRequest, onEvent: OnEvent = () => {}): Promise<EvacuationReport> {
    const t0 = performance.now();
    const parallel = req.parallel ?? DEFAULT_PARALLEL;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL)
      throw new InvalidArgumentError(`--parallel must be a whole number from 1 to ${MAX_PARALLEL}, not "${parallel}"`);
    const targets = this.#targets(req.to);
    if (this.#isEvacuating) throw new ConflictError("This host is evacuating already");
    if (this.#isReturning) throw new ConflictError("This host is bringing its pods home: evacuate once that is done");
    this.#isEvacuating = true;
    try {
      return await this.#evacuate(req, targets, parallel, onEvent, t0);
    } finally {
      this.#isEvacuating = false;
    }
  }

  /** The peers to consider: all of them, or those asked for (each must be a peer). */
  #targets(to: string[] | undefined): string[] {
    const known = this.deps.peers.names();
    if (to === undefined || to.length === 0) return known;
    const self = this.deps.hostName();
    for (const name of to) {
      if (name === self && self !== "") throw new InvalidArgumentError(`--to "${name}" is this host: name a peer`);
      if (!known.includes(name))
        throw new InvalidArgumentError(
          `--to "${name.slice(0, 63)}" is not a peer of this host (${known.length ? `its peers: ${known.join(", ")}` : "it has none; see `autopod peer add`"})`,
        );
    }
    return [...new Set(to)];
  }

  async #evacuate(req: EvacuateRequest, targets: string[], parallel: number, onEvent: OnEvent, t0: number): Promise<EvacuationReport> {
    const isSuspendOn = req.suspendFallback ?? true;
    const running = this.deps.pods.list().filter((p) => p.state === "running");
    const pods: PodToPlace[] = running.map((p) => ({
      name: p.name,
      address: p.address,
      memoryBytes: p.memoryBytes ?? 0,
      diskBytes: diskNeedOf(p.memoryBytes ?? 0),
    }));
    onEvent({
      message: `evacuating ${pods.length} running pod${pods.length === 1 ? "" : "s"}; asking ${targets.length} peer${targets.length === 1 ? "" : "s"}`,
    });
    const [local, candidates] = await Promise.all([this.deps.local(), Promise.all(targets.map((t) => this.#candidate(t)))]);
    for (const c of candidates) if (c.error) onEvent({ message: `peer "${c.host}" could not be asked: ${c.error}` });
    const plan = planEvacuation(pods, candidates, local);
    for (const p of plan.peers) if (!p.isUsable) onEvent({ message: `not a destination: ${p.reason}` });

    if (req.dryRun) {
      const out: EvacuatedPod[] = plan.placements.map((p) =>
        p.to
          ? { pod: p.pod, outcome: "migrated", to: p.to }
          : isSuspendOn
            ? { pod: p.pod, outcome: "suspended", reason: p.reason! }
            : { pod: p.pod, outcome: "stayed", reason: p.reason! },
      );
      for (const o of out) onEvent({ pod: o.pod, message: o.to ? `would migrate to "${o.to}"` : `would be ${o.outcome}: ${o.reason}` });
      return { pods: out, wallMs: Math.round(performance.now() - t0), dryRun: true };
    }

    const results = new Map<string, EvacuatedPod>();
    const turns = new FreezeTurns();
    const queue = [...plan.placements];
    const byName = new Map(pods.map((p) => [p.name, p]));
    /** Peers a migration failed to during this evacuation: a pod planned for one is placed afresh before it goes. */
    const suspects = new Set<string>();
    const work = async () => {
      for (let p = queue.shift(); p; p = queue.shift()) {
        const moved = await this.#moveOne(byName.get(p.pod)!, p, { targets, local, turns, suspects }, onEvent);
        if ("moved" in moved) {
          results.set(p.pod, moved.moved);
          continue;
        }
        const { why, attempts } = moved;
        const tried = attempts.length ? { attempts } : {};
        if (!moved.isHere) {
          results.set(p.pod, { pod: p.pod, outcome: "stayed", reason: why, ...tried });
          continue;
        }
        if (!isSuspendOn) {
          results.set(p.pod, { pod: p.pod, outcome: "stayed", reason: why, ...tried });
          onEvent({ pod: p.pod, message: `stays running here: ${why}` });
          continue;
        }
        // A suspend freezes the pod too: its turn, like a migration's freeze.
        const release = await turns.freeze();
        try {
          results.set(p.pod, { ...(await this.#suspendOne(p.pod, why, onEvent)), ...tried });
        } finally {
          release();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(queue.length, 1)) }, work));
    const report: EvacuationReport = {
      pods: plan.placements.map((p) => results.get(p.pod)!),
      wallMs: Math.round(performance.now() - t0),
      dryRun: false,
    };
    const count = (o: EvacuatedPod["outcome"]) => report.pods.filter((p) => p.outcome === o).length;
    this.deps.log.info("evacuated", { migrated: count("migrated"), suspended: count("suspended"), stayed: count("stayed"), wall_ms: report.wallMs });
    onEvent({ message: `done: ${count("migrated")} migrated, ${count("suspended")} suspended, ${count("stayed")} stayed, in ${report.wallMs} ms` });
    return report;
  }

  async #candidate(host: string): Promise<Candidate> {
    try {
      const c = this.deps.peers.client(host);
      const [info, pods, m] = await Promise.all([c.info(), c.pods(), c.maintenance()]);
      return { host, facts: info, pods, verdict: m?.verdict ?? info.verdict, maintenance: m?.maintenance ?? null };
    } catch (e) {
      return { host, facts: null, pods: null, verdict: null, maintenance: null, error: errorMessage(e) };
    }
  }

  /**
   * Migrate one pod to its planned peer; when that fails and the pod still runs here, place it afresh
   * without the peers that failed it (asking the others again: what they hold has changed) and try the
   * next, up to MAX_ATTEMPTS. A planned peer that failed another pod meanwhile is asked again first.
   */
  async #moveOne(
    pod: PodToPlace,
    planned: Placement,
    o: { targets: string[]; local: LocalFacts; turns: FreezeTurns; suspects: Set<string> },
    onEvent: OnEvent,
  ): Promise<{ moved: EvacuatedPod } | { why: string; attempts: MigrationAttempt[]; isHere: boolean }> {
    const attempts: MigrationAttempt[] = [];
    let to = planned.to;
    let why = planned.reason ?? "";
    if (to !== null && o.suspects.has(to)) {
      const again = await this.#placeAgain(pod, o.targets, o.local);
      if (again.to !== to)
        onEvent({ pod: pod.name, message: `placed afresh (a migration to "${to}" failed meanwhile): ${again.to ? `to "${again.to}"` : again.reason}` });
      to = again.to;
      why = again.reason ?? "";
    }
    while (to !== null) {
      const r = await this.#migrateOne(pod.name, to, o.turns, onEvent);
      if ("moved" in r) return { moved: attempts.length ? { ...r.moved, attempts } : r.moved };
      attempts.push({ to, reason: r.reason });
      o.suspects.add(to);
      why = r.reason;
      if (!this.#isRunningHere(pod.name)) {
        // The migration's guarantee says it runs here; if it does not, moving or suspending it again would be a guess.
        why = `${r.reason}; it is not running here afterwards, so it was not tried elsewhere`;
        onEvent({ pod: pod.name, message: why });
        return { why, attempts, isHere: false };
      }
      const left = o.targets.filter((t) => !attempts.some((a) => a.to === t));
      if (attempts.length >= MAX_ATTEMPTS || left.length === 0) break;
      const again = await this.#placeAgain(pod, left, o.local);
      if (again.to === null) {
        why = `${r.reason}; ${again.reason?.replace(/^no peer can take it/, "no other peer can take it")}`;
        break;
      }
      to = again.to;
      onEvent({ pod: pod.name, message: `trying "${to}" instead (attempt ${attempts.length + 1})` });
    }
    return { why, attempts, isHere: true };
  }

  /** A fresh placement of one pod among `targets`, each asked again. */
  async #placeAgain(pod: PodToPlace, targets: string[], local: LocalFacts): Promise<Placement> {
    const candidates = await Promise.all(targets.map((t) => this.#candidate(t)));
    return planEvacuation([pod], candidates, local).placements[0]!;
  }

  #isRunningHere(pod: string): boolean {
    return this.deps.pods.list().some((p) => p.name === pod && p.state === "running");
  }

  async #migrateOne(pod: string, to: string, turns: FreezeTurns, onEvent: OnEvent): Promise<{ moved: EvacuatedPod } | { reason: string }> {
    onEvent({ pod, message: `migrating to "${to}"` });
    // Recorded before it moves: an agent that dies once the peer runs the pod still knows where it went
    // (bringHome drops an entry whose pod runs here after all).
    recordAway(this.deps.stateDir, { pod, outcome: "migrated", to, at: new Date().toISOString() });
    try {
      const r = await this.deps.migrate(pod, { to, mode: "auto", maxRounds: MAX_ROUNDS, turns }, (p) => onEvent({ pod, message: p.message }));
      onEvent({ pod, message: `migrated to "${to}": frozen ${r.freezeMs} ms, ${r.bytesSent} bytes sent` });
      const pulled = r.pages ? { pagesBytes: r.pages.bytes } : {};
      return { moved: { pod, outcome: "migrated", to, freezeMs: r.freezeMs, bytesSent: r.bytesSent, ...pulled, rounds: r.rounds.length } };
    } catch (e) {
      recordHome(this.deps.stateDir, pod);
      const reason = `migration to "${to}" failed: ${errorMessage(e)}`;
      this.deps.log.warn("evacuation: a migration failed; the pod runs on here", { pod, to, error: errorMessage(e) });
      onEvent({ pod, message: reason });
      return { reason };
    }
  }

  async #suspendOne(pod: string, why: string, onEvent: OnEvent): Promise<EvacuatedPod> {
    onEvent({ pod, message: `suspending to local disk (${why})` });
    try {
      const r = await this.deps.suspend(pod);
      recordAway(this.deps.stateDir, { pod, outcome: "suspended", image: r.image, at: new Date().toISOString() });
      onEvent({ pod, message: `suspended to image ${r.image.slice(0, 12)} (frozen ${r.freezeMs} ms)` });
      return { pod, outcome: "suspended", reason: why, freezeMs: r.freezeMs };
    } catch (e) {
      const reason = `${why}; and suspending it failed: ${errorMessage(e)}`;
      this.deps.log.warn("evacuation: a suspend failed; the pod runs on here", { pod, error: errorMessage(e) });
      onEvent({ pod, message: `stays running here: ${reason}` });
      return { pod, outcome: "stayed", reason };
    }
  }

  /** Ask the peers to migrate the evacuated pods back here, and restore the suspended ones. What fails stays recorded, to try again. */
  async bringHome(onEvent: OnEvent = () => {}): Promise<ReturnReport> {
    const t0 = performance.now();
    if (this.#isEvacuating) throw new ConflictError("This host is evacuating: bring the pods home once that is done");
    if (this.#isReturning) throw new ConflictError("This host is bringing its pods home already");
    this.#isReturning = true;
    try {
      const away = readRecord(this.deps.stateDir);
      onEvent({ message: away.length ? `bringing ${away.length} pod${away.length === 1 ? "" : "s"} home` : "no pods are away" });
      const out: ReturnReport["pods"] = [];
      const origin = this.deps.hostName();
      const here = new Map(this.deps.pods.list().map((p) => [p.name, p.state]));
      // Restores are local (disk and CPU): first, one at a time; then the peers send theirs, one per peer at a time.
      for (const a of away.filter((x) => x.outcome === "suspended")) out.push(await this.#restoreOne(a, here.get(a.pod), onEvent));
      const byPeer = new Map<string, AwayPod[]>();
      for (const a of away) if (a.outcome === "migrated") byPeer.set(a.to, [...(byPeer.get(a.to) ?? []), a]);
      await Promise.all(
        [...byPeer].map(async ([peer, list]) => {
          for (const a of list) out.push(await this.#returnOne(origin, peer, a.pod, here.get(a.pod), onEvent));
        }),
      );
      const order = new Map(away.map((a, i) => [a.pod, i]));
      out.sort((x, y) => order.get(x.pod)! - order.get(y.pod)!);
      const report = { pods: out, wallMs: Math.round(performance.now() - t0) };
      this.deps.log.info("brought pods home", {
        returned: out.filter((p) => p.outcome !== "failed").length,
        failed: out.filter((p) => p.outcome === "failed").length,
      });
      return report;
    } finally {
      this.#isReturning = false;
    }
  }

  async #restoreOne(a: AwayPod & { outcome: "suspended" }, state: string | undefined, onEvent: OnEvent): Promise<ReturnReport["pods"][number]> {
    if (state === "running") {
      recordHome(this.deps.stateDir, a.pod);
      onEvent({ pod: a.pod, message: "runs here already" });
      return { pod: a.pod, outcome: "restored", reason: "it runs here already" };
    }
    try {
      onEvent({ pod: a.pod, message: `restoring from image ${a.image.slice(0, 12)}` });
      await this.deps.resume(a.image);
      recordHome(this.deps.stateDir, a.pod);
      onEvent({ pod: a.pod, message: "restored" });
      return { pod: a.pod, outcome: "restored" };
    } catch (e) {
      onEvent({ pod: a.pod, message: `restore failed: ${errorMessage(e)}` });
      return { pod: a.pod, outcome: "failed", reason: `restore failed: ${errorMessage(e)}` };
    }
  }

  async #returnOne(origin: string, peer: string, pod: string, state: string | undefined, onEvent: OnEvent): Promise<ReturnReport["pods"][number]> {
    if (state === "running") {
      recordHome(this.deps.stateDir, pod);
      onEvent({ pod, message: "runs here already" });
      return { pod, outcome: "returned", from: peer, reason: "it runs here already" };
    }
    try {
      if (!origin) throw new PreconditionError("This host is not in a cluster");
      onEvent({ pod, message: `asking "${peer}" to migrate it back` });
      const r = await this.deps.peers.client(peer).returnPod(origin, pod);
      recordHome(this.deps.stateDir, pod);
      onEvent({ pod, message: `back from "${peer}": frozen ${r.freezeMs} ms, ${r.bytesSent} bytes sent` });
      return { pod, outcome: "returned", from: peer, freezeMs: r.freezeMs, bytesSent: r.bytesSent };
    } catch (e) {
      // A peer that no longer has the pod (it was removed or moved on there) cannot return it: the record keeps it, to say so again.
      const why = e instanceof NotFoundError ? errorMessage(e) : `"${peer}" could not send it back: ${errorMessage(e)}`;
      onEvent({ pod, message: why });
      return { pod, outcome: "failed", from: peer, reason: why };
    }
  }
}
