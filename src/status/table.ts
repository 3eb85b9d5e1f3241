/** The status report as a table for people: one line per check, then the verdict. */
import type { Reason } from "./checker.ts";
import { exitStatusOf, type StatusReport } from "./report.ts";

function describeReason(r: Reason): string {
  switch (r.kind) {
    case "package":
      return `${r.name}${r.arch ? `:${r.arch}` : ""} ${r.installed} -> ${r.candidate}${r.security ? (r.security_version && r.security_version !== r.candidate ? ` [security, fixed in ${r.security_version}]` : " [security]") : ""}${r.origins.length ? ` (${r.origins.join(", ")})` : ""}`;
    case "file":
      return `${r.path}${r.detail ? `: ${r.detail}` : ""}`;
    case "process":
      return `pid ${r.pid} ${r.command}${r.pod ? ` pod ${r.pod}` : ""}${r.unit ? ` unit ${r.unit}` : ""}: ${r.files.map((f) => `${f.path} (${[f.change, f.loaded_by && `${f.loaded_by} source`, f.package && `package ${f.package}`].filter(Boolean).join(", ")})`).join(", ")}`;
    case "group":
      return `${r.group} ${r.name}: pid ${r.pids.join(", ")}`;
    case "kernel":
      return r.change === "version_upgrade"
        ? `newer kernel ${r.installed} installed (${r.image}), running ${r.running}`
        : `kernel ${r.running} rebuilt: installed "${r.installed_build}", running "${r.running_build}"`;
    case "lock":
      return `${r.path} held by ${r.pid === undefined ? "an unknown process" : `pid ${r.pid}${r.command ? ` (${r.command})` : ""}`}`;
    case "livepatch":
      return `live patch ${r.name}${r.enabled ? "" : " (disabled)"}${r.in_transition ? " (in transition)" : ""}`;
    case "note":
      return r.message;
  }
}

export function formatTable(report: StatusReport, opts: { verbose?: boolean } = {}): string {
  const rows = report.checks.map((c) => [c.check, c.verdict, c.summary] as const);
  const w0 = Math.max("CHECK".length, ...rows.map((r) => r[0].length));
  const w1 = Math.max("VERDICT".length, ...rows.map((r) => r[1].length));
  const lines = [`${"CHECK".padEnd(w0)}  ${"VERDICT".padEnd(w1)}  SUMMARY`];
  for (const c of report.checks) {
    lines.push(`${c.check.padEnd(w0)}  ${c.verdict.padEnd(w1)}  ${c.summary}`);
    if (opts.verbose) {
      lines.push(`${"".padEnd(w0)}  source: ${c.source}`);
      for (const r of c.reasons) lines.push(`${"".padEnd(w0)}  - ${describeReason(r)}`);
    }
  }
  const failed = report.checks.filter((c) => c.verdict === "error").map((c) => c.check);
  lines.push("");
  lines.push(
    `verdict: ${report.verdict} (exit ${exitStatusOf(report)})${failed.length ? `; incomplete: ${failed.join(", ")} failed` : ""}` +
      `; host ${report.host}, checked ${report.checked_at} in ${(report.duration_ms / 1000).toFixed(1)} s`,
  );
  return lines.join("\n");
}
