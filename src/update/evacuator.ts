/**
 * What the update cycle needs of evacuation: move every pod off this host
 * (live, or suspended to disk when no peer can take it) and bring them home
 * after the reboot. The agent wires its Evacuations (src/evacuate/) into this;
 * the cycle's tests use a fake.
 */
export interface EvacuateRequest {
  to?: string[];
  parallel?: number;
  dryRun?: boolean;
  suspendFallback?: boolean;
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
  rounds?: number;
  /** Failed migrations before this outcome (src/evacuate/index.ts). */
  attempts?: { to: string; reason: string }[];
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

/** A progress event of an evacuation or a return, passed on as it comes. */
export type EvacuatorEvent = unknown;

export interface Evacuator {
  evacuate(req: EvacuateRequest, onEvent?: (event: EvacuatorEvent) => void): Promise<EvacuationReport>;
  bringHome(onEvent?: (event: EvacuatorEvent) => void): Promise<ReturnReport>;
  /** Tell peers this host is updating (so none places pods here meanwhile); null when done. */
  declareMaintenance?(state: "updating" | null): void;
  /** return = false: the pods stay where they went; forget that they are away (else peers keep seeing this host as about to update). */
  forget?(): void;
}

/** An agent without evacuation: every call fails with a clear message (the cycle turns it into a failed step). */
export const missingEvacuator: Evacuator = {
  evacuate: () => Promise.reject(new Error("This agent cannot evacuate pods: evacuation is not wired in")),
  bringHome: () => Promise.reject(new Error("This agent cannot bring pods home: evacuation is not wired in")),
};
