/**
 * The host's status report: every check's result, the overall verdict and the
 * exit status a script (or kured's --reboot-sentinel-command) can act on.
 * Its JSON form is documented in docs/status.md and validated by report-schema.ts.
 */
import type { Reason } from "./checker.ts";
import { type Verdict, worstVerdict } from "./verdict.ts";

export const STATUS_SCHEMA_VERSION = 1;

/** One check's part of the report. */
export interface CheckReport {
  check: string;
  source: string;
  verdict: Verdict;
  summary: string;
  reasons: Reason[];
  error?: string;
  duration_ms: number;
}

export interface StatusReport {
  schema_version: typeof STATUS_SCHEMA_VERSION;
  host: string;
  /** ISO 8601, UTC. */
  checked_at: string;
  duration_ms: number;
  /** The verdict that demands most of the host (see verdict.ts for the order). */
  verdict: Verdict;
  /** Some package has a pending update. */
  needs_update: boolean;
  /** Some check says the host must reboot. */
  needs_reboot: boolean;
  /** False when a check failed: the verdict then rests on the checks that answered. */
  complete: boolean;
  updates: { total: number; security: number };
  checks: CheckReport[];
}

/** Exit statuses of `autopod status`: the more urgent the finding, the higher the code. */
export const EXIT_STATUS: Record<Exclude<Verdict, "not_applicable">, number> = {
  ok: 0,
  error: 1,
  update_available: 10,
  security_update_available: 11,
  reboot_required: 12,
};

/** Assemble the report from the checks' results. Pure. */
export function buildReport(host: string, checkedAt: Date, durationMs: number, checks: CheckReport[]): StatusReport {
  const packages = checks.flatMap((c) => c.reasons).filter((r) => r.kind === "package");
  return {
    schema_version: STATUS_SCHEMA_VERSION,
    host,
    checked_at: checkedAt.toISOString(),
    duration_ms: Math.round(durationMs),
    verdict: worstVerdict(checks.map((c) => c.verdict)),
    needs_update: packages.length > 0,
    needs_reboot: checks.some((c) => c.verdict === "reboot_required"),
    complete: checks.every((c) => c.verdict !== "error"),
    updates: { total: packages.length, security: packages.filter((p) => p.security).length },
    checks,
  };
}

/** The exit status for a report's verdict. */
export function exitStatusOf(report: Pick<StatusReport, "verdict">): number {
  return report.verdict === "not_applicable" ? EXIT_STATUS.ok : EXIT_STATUS[report.verdict];
}
