import { InvalidArgumentError } from "../errors.ts";
import { collectStatus, exitStatusOf, formatPrometheus, formatTable } from "../status/index.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const statusCommand: Command = {
  name: "status",
  summary: "report whether this host needs OS updates or a reboot",
  usage: "status [--json | --prometheus] [--verbose]",
  details: [
    "Checks this host directly; the agent need not run. The checks: pending updates",
    "from the host's package manager (apt, dnf or apk; the others say not_applicable),",
    "security ones by the archive they come from; reboot sentinels and needs-restarting;",
    "the running kernel against the newest installed one of its flavour; processes",
    "running deleted or replaced code. Nothing is changed and nothing is downloaded.",
    "The JSON schema is documented in docs/status.md.",
    "",
    "Exit status (the most urgent finding wins):",
    "   0  all clear",
    "   1  a check failed and no other found anything to do (2 is a usage error)",
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
  ],
  async run(ctx) {
    const json = flagBool(ctx.args, "json");
    const prometheus = flagBool(ctx.args, "prometheus");
    if (json && prometheus) throw new InvalidArgumentError("Choose one of --json and --prometheus");
    if (ctx.args.positionals.length) throw new InvalidArgumentError(`Unexpected argument "${ctx.args.positionals[0]}"`);
    const { config } = await ctx.config();
    const report = await collectStatus({ lockTimeoutMs: config.status.lock_timeout_seconds * 1000 });
    ctx.out(json ? JSON.stringify(report, null, 2) : prometheus ? formatPrometheus(report) : formatTable(report, { verbose: flagBool(ctx.args, "verbose") }));
    return exitStatusOf(report);
  },
};
