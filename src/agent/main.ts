/** `autopod agent`: parse its flags, load the config, run the daemon until a signal. */
import { flagBool, flagString, formatOptions, type OptionSpec, parseArgs } from "../cli/args.ts";
import { GLOBAL_OPTIONS } from "../cli/command.ts";
import { parseFailpointSpec } from "../debug/failpoints.ts";
import { errorMessage, InvalidArgumentError } from "../errors.ts";
import { createLogger, isLogLevel } from "../log.ts";

const AGENT_OPTIONS: OptionSpec[] = [
  ...GLOBAL_OPTIONS,
  {
    name: "failpoints",
    kind: "string",
    value: "SPEC",
    help: "for tests only: allow failpoints, set those in SPEC (NAME=ACTIONS;...), and serve /v1/debug/failpoints",
  },
];

const HELP = `Usage: autopod agent [--socket PATH] [--state DIR] [--config FILE] [--log-level LEVEL] [--failpoints SPEC]

Run the autopod daemon (as root). It serves the local API on a unix socket
(mode 0600), keeps its state in the state directory, and runs pods on its own
bridge and pod subnet (network.bridge, network.subnet in the config). Pods keep
running when the agent stops; a new agent re-adopts them.

Several agents can share a machine when each has its own socket, state
directory, bridge and subnet.

Failpoints (for fault tests only, never in production): --failpoints ""
allows them; ACTIONS are [COUNT*]ACTION joined by "->", ACTION one of off,
sleep(MS), error(MSG), kill (the agent SIGKILLs itself there), pause(FILE);
for example --failpoints "checkpoint.committed=kill". The points and their
phases are listed in src/debug/failpoints.ts.

Options:
${formatOptions(AGENT_OPTIONS)}`;

/** The daemon's entry point; returns the exit status. */
export async function runAgent(argv: string[]): Promise<number> {
  const err = (s: string) => process.stderr.write(s + "\n");
  let args;
  try {
    args = parseArgs(argv, AGENT_OPTIONS);
  } catch (e) {
    err(`autopod agent: ${errorMessage(e)}\nRun \`autopod agent --help\` for usage.`);
    return 2;
  }
  if (flagBool(args, "help")) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  if (args.positionals.length) {
    err(`autopod agent: unexpected argument "${args.positionals[0]}"\nRun \`autopod agent --help\` for usage.`);
    return 2;
  }
  const logLevel = flagString(args, "log-level");
  if (logLevel !== undefined && !isLogLevel(logLevel)) {
    err(`autopod agent: --log-level must be one of debug, info, warn, error (got "${logLevel}")`);
    return 2;
  }
  const failpoints = flagString(args, "failpoints");
  try {
    if (failpoints !== undefined) parseFailpointSpec(failpoints);
  } catch (e) {
    err(`autopod agent: --failpoints: ${errorMessage(e)}`);
    return 2;
  }
  try {
    const { loadConfig } = await import("../config/load.ts");
    const { config } = await loadConfig({
      path: flagString(args, "config"),
      flags: { state_dir: flagString(args, "state"), socket: flagString(args, "socket"), log_level: logLevel },
    });
    const log = createLogger({ level: config.log_level, fields: { agent: process.pid } });
    const { startAgent } = await import("./agent.ts");
    const agent = await startAgent(config, log, { failpoints });
    await agent.done;
    return 0;
  } catch (e) {
    err(`autopod agent: ${errorMessage(e)}`);
    return e instanceof InvalidArgumentError ? 2 : 1;
  }
}
