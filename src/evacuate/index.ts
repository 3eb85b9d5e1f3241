/**
 * Evacuation: every running pod of this host moves live to peers (placement.ts
 * chooses where), a pod no peer can take is suspended to local disk, and
 * afterwards they are brought home: the peers migrate them back, the suspended
 * ones are restored here. What the update cycle calls (src/policy/).
 */
export { Evacuations, type EvacuationsDeps, type EvacuationPeer, type EvacuationPeers, type EvacuateEvent, type MaintenanceAnswer } from "./evacuations.ts";
export { planEvacuation, peerRefusal, type Candidate, type EvacuationPlan, type PeerMaintenance, type Placement, type PodToPlace } from "./placement.ts";
export { readRecord, type AwayPod } from "./record.ts";
export { readArrivals, recordArrival, forgetArrival } from "./arrivals.ts";

export interface EvacuateRequest {
  to?: string[];
  parallel?: number;
  dryRun?: boolean;
  suspendFallback?: boolean;
}

/** A migration of the pod that failed (it ran on here); the next peer, or the fallback, came after it. */
export interface MigrationAttempt {
  to: string;
  reason: string;
}

export interface EvacuatedPod {
  pod: string;
  outcome: "migrated" | "suspended" | "stayed";
  to?: string;
  reason?: string;
  freezeMs?: number;
  bytesSent?: number;
  /** Post-copy: the bytes of its page pull, after it ran on the peer (not in bytesSent). */
  pagesBytes?: number;
  /** Pre-copy rounds before its freeze (a migrated pod). */
  rounds?: number;
  /** The failed migrations before this outcome, in order; absent when the first try worked. */
  attempts?: MigrationAttempt[];
}

export interface EvacuationReport {
  pods: EvacuatedPod[];
  wallMs: number;
  dryRun: boolean;
}

export interface ReturnReport {
  /** freezeMs and bytesSent: a returned pod's, as its peer's migration back reported them. */
  pods: { pod: string; outcome: "returned" | "restored" | "failed"; from?: string; reason?: string; freezeMs?: number; bytesSent?: number }[];
  wallMs: number;
}
