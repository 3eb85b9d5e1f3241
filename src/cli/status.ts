import { InvalidArgumentError, UnavailableError } from "../errors.ts";
import {
  collectStatus,
  exitStatusOf,
  formatPrometheus,
  formatTable,
  hostPaths,
  type StatusReport,
  type StatusSnapshot,
  statusCacheDir,
} from "../status/index.ts";
import { clientFor } from "./_client.ts";
import { flagBool } from "./args.ts";
import type { Command, CommandContext } from "./command.ts";

/** How long --from-agent waits for an agent that has just started to finish its first check. */
const FIRST_REPORT_TIMEOUT_MS = 180_000;
const POLL_MS = 250;

export const statusCommand: Command = {
  name: "status",
  summary: "report whether this host needs OS updates or a reboot",
  usage: "status [--json | --prometheus] [--verbose] [--no-cache | --from-agent [--refresh]]",
  details: [
    "Checks this host directly; the agent need not run. The checks: pending updates",
    "from the host's package manager (apt, dnf or apk; the others say not_applicable),",
    "security ones by the archive they come from; reboot sentinels and needs-restarting;",
    "the running kernel against the newest installed one of its flavour; processes",
    "running deleted or replaced code (libraries, and Python, Perl or Ruby scripts and",
    "modules). Nothing is changed and nothing is downloaded.",
    "The JSON schema is documented in docs/status.md.",
    "",
    "apt's answer is kept in <state_dir>/cache/status and given again while the dpkg",
    "database, the package lists and apt's configuration are unchanged (by their",
    "sizes, inodes and times); --no-cache runs apt regardless.",
    "",
    "With --from-agent, prints the agent's latest report instead (it refreshes it every",
    "status.refresh_seconds and when the package database changes): cheap, and the",
    "same formats and exit statuses. --refresh makes the agent check afresh first.",
    "",
    "Exit status (the most urgent finding wins):",
    "   0  all clear",
    "   1  a check failed and no other found anything to do, or the agent could not",
    "      be asked (2 is a usage error)",
    "  10  updates available",
    "  11  security updates available",
    "  12  reboot required",
    "",
    "For kured: --reboot-sentinel-command=\"sh -c 'autopod status >/dev/null; test $? -eq 12'\"",
  ].join("\n"),
  options: [
    { name: "json", kind: "boolean", help: "print the report as JSON" },
    { name: "prometheus", kind: "boolean", help: "print Prometheus text format (for node_exporter's textfile collector)" },
    { name: "verbose", short: "v", kind: "boolean", help: "list every check's source and reasons under it" },
    { name: "no-cache", kind: "boolean", help: "run apt even when nothing it reads has changed since the last check" },
    { name: "from-agent", kind: "boolean", help: "print the running agent's latest report instead of checking here" },
    { name: "refresh", kind: "boolean", help: "with --from-agent: have the agent check afresh, and wait for it" },
  ],
  async run(ctx) {
    const json = flagBool(ctx.args, "json");
    const prometheus = flagBool(ctx.args, "prometheus");
    const fromAgent = flagBool(ctx.args, "from-agent");
    const refresh = flagBool(ctx.args, "refresh");
    const noCache = flagBool(ctx.args, "no-cache");
    if (noCache && fromAgent) throw new InvalidArgumentError("--no-cache checks here; with --from-agent use --refresh");
    if (json && prometheus) throw new InvalidArgumentError("Choose one of --json and --prometheus");
    if (refresh && !fromAgent) throw new InvalidArgumentError("--refresh goes with --from-agent (without it, status always checks afresh)");
    if (ctx.args.positionals.length) throw new InvalidArgumentError(`Unexpected argument "${ctx.args.positionals[0]}"`);
    const { config } = await ctx.config();
    let report: StatusReport;
    let note: string | null = null;
    if (fromAgent) {
      const snap = await agentReport(ctx, refresh);
      report = snap.report;
      note = describeSnapshot(snap);
      if (snap.last_error)
        ctx.err(
          `autopod status: the agent's last refresh failed at ${snap.last_error.at} (${snap.last_error.message}); this report is from ${report.checked_at}`,
        );
    } else {
      report = await collectStatus({
        paths: hostPaths({ root: config.status.root }),
        lockTimeoutMs: config.status.lock_timeout_seconds * 1000,
        ...(noCache ? {} : { cacheDir: statusCacheDir(config.state_dir) }),
      });
    }
    if (json) ctx.out(JSON.stringify(report, null, 2));
    else if (prometheus) ctx.out(formatPrometheus(report));
    else ctx.out(formatTable(report, { verbose: flagBool(ctx.args, "verbose") }) + (note ? `\n${note}` : ""));
    return exitStatusOf(report);
  },
};

/** The agent's report: fresh with refresh; else the cached one, waiting for the first if the agent has just started. */
async function agentReport(ctx: CommandContext, refresh: boolean): Promise<StatusSnapshot & { report: StatusReport }> {
  const client = await clientFor(ctx);
  const deadline = Date.now() + FIRST_REPORT_TIMEOUT_MS;
  for (let snap = await client.status(refresh); ; snap = await client.status()) {
    if (snap.report) return snap as StatusSnapshot & { report: StatusReport };
    if (!snap.refreshing && snap.last_error)
      throw new UnavailableError(`The agent has no status report: its last check failed at ${snap.last_error.at} (${snap.last_error.message})`);
    if (Date.now() > deadline) throw new UnavailableError(`The agent has no status report after ${FIRST_REPORT_TIMEOUT_MS / 1000} s`);
    await Bun.sleep(POLL_MS);
  }
}

/** One line for the table: how old the agent's report is and what it is doing. */
function describeSnapshot(s: StatusSnapshot & { report: StatusReport }): string {
  const age = Math.max(0, Math.round((Date.now() - Date.parse(s.report.checked_at)) / 1000));
  const parts = [`from the agent: checked ${age} s ago`];
  if (s.refreshing) parts.push("refreshing now");
  else if (s.next_refresh_at) parts.push(`next refresh ${s.next_refresh_at}`);
  if (s.last_error) parts.push(`last refresh failed: ${s.last_error.message}`);
  return parts.join("; ");
}
