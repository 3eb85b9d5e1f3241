/** A FAKE Evacuator for the cycle's tests: records calls, answers what it is told, moves nothing. */
import type { EvacuateRequest, EvacuationReport, Evacuator, EvacuatorEvent, ReturnReport } from "./evacuator.ts";

export class FakeEvacuator implements Evacuator {
  readonly calls: { op: "evacuate" | "bringHome"; req?: EvacuateRequest }[] = [];
  /** The pods and how each leaves. */
  pods: { pod: string; outcome: "migrated" | "suspended" | "stayed"; reason?: string; attempts?: { to: string; reason: string }[] }[] = [
    { pod: "web", outcome: "migrated" },
    { pod: "db", outcome: "suspended" },
  ];
  failEvacuate: string | null = null;
  failBringHome: string | null = null;

  async evacuate(req: EvacuateRequest, onEvent?: (e: EvacuatorEvent) => void): Promise<EvacuationReport> {
    this.calls.push({ op: "evacuate", req });
    onEvent?.({ pod: this.pods[0]?.pod, message: "moving to peer-b" });
    if (this.failEvacuate) throw new Error(this.failEvacuate);
    return {
      pods: this.pods.map((p) => ({ ...p, ...(p.outcome === "migrated" ? { to: "peer-b", freezeMs: 120, bytesSent: 4096 } : {}) })),
      wallMs: 1500,
      dryRun: req.dryRun ?? false,
    };
  }

  async bringHome(onEvent?: (e: EvacuatorEvent) => void): Promise<ReturnReport> {
    this.calls.push({ op: "bringHome" });
    onEvent?.({ phase: "fake-return" });
    if (this.failBringHome) throw new Error(this.failBringHome);
    return { pods: this.pods.filter((p) => p.outcome !== "stayed").map((p) => ({ pod: p.pod, outcome: "returned", from: "peer-b" })), wallMs: 800 };
  }

  /** What declareMaintenance was told, in order. */
  readonly declared: ("updating" | null)[] = [];
  forgot = 0;

  declareMaintenance(state: "updating" | null): void {
    this.declared.push(state);
  }

  forget(): void {
    this.forgot++;
  }

  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
}
