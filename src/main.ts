#!/usr/bin/env bun
/**
 * autopod: `autopod agent` runs the daemon; every other command is a thin
 * client. This file alone decides exit statuses.
 */
import { AutopodError, errorMessage, InvalidArgumentError } from "./errors.ts";
import { createLogger, isLogLevel } from "./log.ts";
import { flagBool, flagString, formatOptions, parseArgs } from "./cli/args.ts";
import { GLOBAL_OPTIONS, type Command, type CommandContext } from "./cli/command.ts";
import { COMMANDS, matchCommand, subcommandsOf } from "./cli/registry.ts";
import { escapeForTerminal } from "./cli/escape.ts";

/** Exit status for usage errors (bad flags, unknown commands). */
const EXIT_USAGE = 2;

function topHelp(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length), "agent".length);
  const rows = [["agent", "run the autopod daemon (see: autopod agent --help)"] as const, ...names.map((n) => [n, COMMANDS[n]!.summary] as const)];
  return [
    "autopod: keep services running, with nothing lost, while their hosts are patched and rebooted.",
    "",
    "Usage: autopod <command> [options]",
    "",
    "Commands:",
    ...rows.map(([n, s]) => `  ${n.padEnd(width)}  ${s}`),
    "",
    "Global options:",
    formatOptions(GLOBAL_OPTIONS),
    "",
    "Run `autopod <command> --help` for a command's own options.",
  ].join("\n");
}

export function commandHelp(cmd: Command): string {
  return [
    `Usage: autopod ${cmd.usage}`,
    "",
    cmd.summary.charAt(0).toUpperCase() + cmd.summary.slice(1) + ".",
    ...(cmd.details ? ["", cmd.details] : []),
    ...(cmd.options.length ? ["", "Options:", formatOptions(cmd.options)] : []),
    "",
    "Global options:",
    formatOptions(GLOBAL_OPTIONS),
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  // Everything the CLI prints may quote names from elsewhere: it goes out escaped (pods' own output does not pass here).
  const out = (s: string) => process.stdout.write(escapeForTerminal(s.endsWith("\n") ? s : s + "\n"));
  const err = (s: string) => process.stderr.write(escapeForTerminal(s.endsWith("\n") ? s : s + "\n"));
  const first = argv[0];
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    if (first === "help" && argv[1]) return main([...argv.slice(1), "--help"]);
    out(topHelp());
    return first === undefined ? EXIT_USAGE : 0;
  }
  if (first === "--version" || first === "-V") argv = ["version", ...argv.slice(1)];
  if (argv[0] === "__install-criu-script") {
    // The binary carries the CRIU installer so an air-gapped install needs nothing else.
    const { carriedCriuInstaller } = await import("./criu-installer.ts");
    process.stdout.write(carriedCriuInstaller());
    return 0;
  }
  if (argv[0] === "__pod-init") {
    // A pod's first process (see platform/linux/pod-init.ts); returns only on failure.
    const { podInit } = await import("./platform/linux/pod-init.ts");
    return podInit(argv.slice(1));
  }
  if (argv[0] === "__exec-in-cgroup") {
    // CRIU restore born in the pod's cgroup (see platform/linux/cgroup-exec.ts); returns only on failure.
    const { execInCgroup } = await import("./platform/linux/cgroup-exec.ts");
    return execInCgroup(argv.slice(1));
  }
  if (argv[0] === "__migration-guard") {
    // Beside a post-copy copy while its pages arrive (see migrate/guard.ts): acts if the agent dies.
    const { migrationGuard } = await import("./migrate/guard.ts");
    return migrationGuard(argv.slice(1));
  }
  if (argv[0] === "agent") {
    const { runAgent } = await import("./agent/main.ts");
    return runAgent(argv.slice(1));
  }
  const match = matchCommand(argv);
  if (!match) {
    const subs = subcommandsOf(argv[0]!);
    if (subs.length) {
      err(`autopod ${argv[0]}: needs a subcommand: ${subs.map((s) => s.split(" ").slice(1).join(" ")).join(", ")}`);
    } else {
      err(`autopod: unknown command "${argv[0]}". Run \`autopod --help\` for the list.`);
    }
    return EXIT_USAGE;
  }
  const cmd = await COMMANDS[match.key]!.load();
  let args;
  try {
    args = parseArgs(match.rest, [...cmd.options, ...GLOBAL_OPTIONS], cmd.parse);
  } catch (e) {
    err(`autopod ${cmd.name}: ${errorMessage(e)}\nRun \`autopod ${cmd.name} --help\` for usage.`);
    return EXIT_USAGE;
  }
  if (flagBool(args, "help")) {
    out(commandHelp(cmd));
    return 0;
  }
  const logLevel = flagString(args, "log-level");
  if (logLevel !== undefined && !isLogLevel(logLevel)) {
    err(`autopod ${cmd.name}: --log-level must be one of debug, info, warn, error (got "${logLevel}")`);
    return EXIT_USAGE;
  }
  let loaded: ReturnType<CommandContext["config"]> | undefined;
  const ctx: CommandContext = {
    args,
    log: createLogger({ level: logLevel !== undefined && isLogLevel(logLevel) ? logLevel : undefined }),
    out,
    err,
    config: () => {
      loaded ??= import("./config/load.ts").then(({ loadConfig }) =>
        loadConfig({
          path: flagString(args, "config"),
          flags: { state_dir: flagString(args, "state"), socket: flagString(args, "socket"), log_level: logLevel },
        }),
      );
      return loaded;
    },
    socket: async () => {
      const { quickSocket } = await import("./config/socket.ts");
      return (await quickSocket({ path: flagString(args, "config"), flag: flagString(args, "socket") })) ?? (await ctx.config()).config.socket;
    },
  };
  try {
    return await cmd.run(ctx);
  } catch (e) {
    err(`autopod ${cmd.name}: ${errorMessage(e)}`);
    if (e instanceof InvalidArgumentError) return EXIT_USAGE;
    if (!(e instanceof AutopodError) && process.env.AUTOPOD_DEBUG) err(String((e as Error).stack));
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(escapeForTerminal(`autopod: ${errorMessage(e)}\n`));
    process.exitCode = 1;
  },
);
