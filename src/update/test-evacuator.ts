/**
 * For tests only (policy.test_evacuator_file): a FAKE evacuator inside a real
 * agent. It moves nothing: it reports this host's pods as migrated to
 * "test-peer" (and brought home after) and appends each call, as a JSON line,
 * to a file, so a root test can drive a real agent through the whole cycle
 * while evacuation itself is built elsewhere.
 */
import { appendFileSync } from "node:fs";
import type { EvacuateRequest, EvacuationReport, Evacuator, ReturnReport } from "./evacuator.ts";

export class RecordingTestEvacuator implements Evacuator {
  constructor(
    readonly file: string,
    readonly podNames: () => string[],
  ) {}

  async evacuate(req: EvacuateRequest): Promise<EvacuationReport> {
    const pods = this.podNames();
    this.#record({ op: "evacuate", req, pods });
    return { pods: pods.map((pod) => ({ pod, outcome: "migrated", to: "test-peer", freezeMs: 0, bytesSent: 0 })), wallMs: 0, dryRun: req.dryRun ?? false };
  }

  async bringHome(): Promise<ReturnReport> {
    const pods = this.podNames();
    this.#record({ op: "bringHome", pods });
    return { pods: pods.map((pod) => ({ pod, outcome: "returned", from: "test-peer" })), wallMs: 0 };
  }

  #record(o: Record<string, unknown>): void {
    appendFileSync(this.file, JSON.stringify({ ...o, at: new Date().toISOString(), pid: process.pid }) + "\n");
  }
}
