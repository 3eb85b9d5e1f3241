/**
 * Where each pod of an evacuating host goes: a pure plan from what the peers
 * say of themselves. A peer is a candidate only if it answered, does not
 * itself need a reboot, and is not in maintenance (evacuating, away, or
 * updating). Each pod, largest first, goes to a candidate that passes the
 * migration pre-flight (CRIU, CPU, memory, disk, name, address) with the
 * pods already planned for it counted in; among those, a peer whose patch
 * verdict is clean before one with updates pending, then the one with the
 * fewest pods (a spread), then the one with the most memory available.
 */
import type { PeerFacts, PeerPodList } from "../migrate/peer.ts";
import { HEADROOM_BYTES, preflightRefusal } from "../migrate/preflight.ts";

export interface PodToPlace {
  name: string;
  address: string;
  memoryBytes: number;
  /** What its image needs on the peer's disk. */
  diskBytes: number;
}

/** A peer's maintenance state as it reports it: any of these makes it no destination. */
export type PeerMaintenance = "evacuating" | "away" | "updating";

export interface Candidate {
  host: string;
  /** What it said of itself; null when it could not be asked (then `error` says why). */
  facts: PeerFacts | null;
  pods: PeerPodList | null;
  /** Its own patch verdict (src/status/verdict.ts), null when it has none yet. */
  verdict: string | null;
  maintenance: PeerMaintenance | null;
  error?: string;
}

export interface LocalFacts {
  criuVersion: string;
  cpuFlags: readonly string[];
}

export interface Placement {
  pod: string;
  /** The peer it goes to; null when none can take it (`reason` says why). */
  to: string | null;
  reason?: string;
}

export interface PeerVerdict {
  host: string;
  isUsable: boolean;
  reason?: string;
  /** Pods planned for it. */
  planned: number;
}

export interface EvacuationPlan {
  /** In the order they should move: largest first. */
  placements: Placement[];
  peers: PeerVerdict[];
}

/** Why a peer is no destination at all, or null. */
export function peerRefusal(c: Candidate): string | null {
  if (!c.facts || !c.pods) return `host "${c.host}" could not be asked: ${c.error ?? "no answer"}`;
  if (c.verdict === "reboot_required") return `host "${c.host}" needs a reboot itself`;
  if (c.maintenance === "evacuating") return `host "${c.host}" is evacuating its own pods`;
  if (c.maintenance === "away") return `host "${c.host}" has evacuated its pods and is about to update`;
  if (c.maintenance === "updating") return `host "${c.host}" is updating`;
  return null;
}

/** 0: clean; 1: unknown or a failed check; 2: updates pending (it may be next to update). */
export function verdictPenalty(verdict: string | null): number {
  if (verdict === "ok" || verdict === "not_applicable") return 0;
  if (verdict === "update_available" || verdict === "security_update_available") return 2;
  return 1;
}

interface Slot {
  c: Candidate;
  facts: PeerFacts;
  pods: PeerPodList;
  planned: number;
}

/** The plan: which peer takes which pod, and why a pod stays. */
export function planEvacuation(pods: readonly PodToPlace[], candidates: readonly Candidate[], local: LocalFacts): EvacuationPlan {
  const refused = new Map<string, string>();
  const slots: Slot[] = [];
  for (const c of candidates) {
    const why = peerRefusal(c);
    if (why) refused.set(c.host, why);
    else slots.push({ c, facts: structuredClone(c.facts!), pods: structuredClone(c.pods!), planned: 0 });
  }
  const order = [...pods].sort((x, y) => y.memoryBytes - x.memoryBytes || x.name.localeCompare(y.name));
  const placements: Placement[] = [];
  for (const pod of order) {
    const reasons: string[] = [];
    const fits: Slot[] = [];
    for (const s of slots) {
      const why = preflightRefusal({ ...pod, criuVersion: local.criuVersion, cpuFlags: local.cpuFlags }, s.facts, s.pods);
      if (why) reasons.push(why);
      else fits.push(s);
    }
    if (fits.length === 0) {
      const all = [...refused.values(), ...reasons];
      placements.push({ pod: pod.name, to: null, reason: all.length ? `no peer can take it: ${all.join("; ")}` : "this host has no peers" });
      continue;
    }
    fits.sort(
      (x, y) =>
        verdictPenalty(x.c.verdict) - verdictPenalty(y.c.verdict) ||
        x.pods.pods.length - y.pods.pods.length ||
        y.facts.memory.availableBytes - x.facts.memory.availableBytes ||
        x.c.host.localeCompare(y.c.host),
    );
    const s = fits[0]!;
    s.planned++;
    s.facts.memory.availableBytes -= pod.memoryBytes;
    s.facts.disk.freeBytes -= pod.diskBytes;
    s.pods.pods.push({ name: pod.name, address: pod.address, live: true });
    placements.push({ pod: pod.name, to: s.c.host });
  }
  const peers: PeerVerdict[] = candidates.map((c) => {
    const why = refused.get(c.host);
    const s = slots.find((x) => x.c === c);
    return why ? { host: c.host, isUsable: false, reason: why, planned: 0 } : { host: c.host, isUsable: true, planned: s?.planned ?? 0 };
  });
  return { placements, peers };
}

/** What a pod's image needs on a peer's disk, as the migration pre-flight counts it. */
export function diskNeedOf(memoryBytes: number): number {
  return memoryBytes + (64 << 20);
}

export { HEADROOM_BYTES };
