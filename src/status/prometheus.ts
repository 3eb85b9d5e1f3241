/**
 * The status report in the Prometheus text exposition format (version 0.0.4),
 * for node_exporter's textfile collector or a scrape of the agent.
 */
import type { StatusReport } from "./report.ts";
import { VERDICTS } from "./verdict.ts";

/** Escape a label value: backslash, double quote and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

type Sample = [labels: Record<string, string>, value: number];

function family(name: string, help: string, samples: Sample[]): string[] {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`];
  for (const [labels, value] of samples) {
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(",");
    lines.push(`${name}${l ? `{${l}}` : ""} ${Number.isFinite(value) ? value : 0}`);
  }
  return lines;
}

export function formatPrometheus(report: StatusReport): string {
  const reasons = report.checks.flatMap((c) => c.reasons);
  const kernel = reasons.filter((r) => r.kind === "kernel");
  const processes = reasons.filter((r) => r.kind === "process");
  const lines = [
    ...family("autopod_status_info", "The host the report is about.", [[{ host: report.host }, 1]]),
    ...family(
      "autopod_status_verdict",
      "The host's overall patch status: 1 for the current verdict, 0 for the others.",
      VERDICTS.map((v) => [{ verdict: v }, report.verdict === v ? 1 : 0]),
    ),
    ...family("autopod_updates_pending", "Pending package updates, security and other; they sum to all pending updates.", [
      [{ kind: "security" }, report.updates.security],
      [{ kind: "other" }, report.updates.total - report.updates.security],
    ]),
    ...family("autopod_reboot_required", "1 when the host needs a reboot.", [[{}, report.needs_reboot ? 1 : 0]]),
    ...family("autopod_kernel_update_pending", "1 when a newer kernel (version_upgrade) or a rebuild of the running one (abi_rebuild) is installed.", [
      [{ change: "version_upgrade" }, kernel.some((k) => k.change === "version_upgrade") ? 1 : 0],
      [{ change: "abi_rebuild" }, kernel.some((k) => k.change === "abi_rebuild") ? 1 : 0],
    ]),
    ...family(
      "autopod_processes_on_replaced_code",
      "Processes running deleted or replaced executables, libraries or interpreted scripts (paths where no package installs are ignored).",
      [[{}, processes.length]],
    ),
    ...family(
      "autopod_check_status",
      "Each check's verdict: 1 for the current one, 0 for the others.",
      report.checks.flatMap((c) => VERDICTS.map((v): Sample => [{ check: c.check, verdict: v }, c.verdict === v ? 1 : 0])),
    ),
    ...family(
      "autopod_check_duration_seconds",
      "How long each check took.",
      report.checks.map((c) => [{ check: c.check }, c.duration_ms / 1000]),
    ),
    ...family("autopod_status_complete", "1 when every check answered, 0 when one failed.", [[{}, report.complete ? 1 : 0]]),
    ...family("autopod_status_checked_timestamp_seconds", "When the checks ran, in seconds since the epoch.", [[{}, Date.parse(report.checked_at) / 1000]]),
  ];
  return lines.join("\n") + "\n";
}
