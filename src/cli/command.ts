import type { LoadedConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { OptionSpec, ParsedArgs, ParseOptions } from "./args.ts";

/** What every command gets: its parsed arguments and lazy access to config. */
export interface CommandContext {
  args: ParsedArgs;
  /** Effective configuration: file, env, then the global flags. */
  config(): Promise<LoadedConfig>;
  /** The agent's socket, as config() would name it, but without loading the whole config when it need not. */
  socket(): Promise<string>;
  log: Logger;
  out(text: string): void;
  err(text: string): void;
}

/** One CLI command. `run` returns the exit status; only main.ts exits. */
export interface Command {
  /** Words that select it: "ps", "image rm". */
  name: string;
  summary: string;
  /** Usage line after "autopod ", e.g. "run NAME --rootfs DIR [options] -- CMD [ARGS...]". */
  usage: string;
  options: OptionSpec[];
  parse?: ParseOptions;
  /** Longer text shown under the usage in --help. */
  details?: string;
  run(ctx: CommandContext): Promise<number>;
}

/** Flags every command accepts. */
export const GLOBAL_OPTIONS: OptionSpec[] = [
  { name: "config", kind: "string", value: "FILE", help: "config file (default /etc/autopod/autopod.toml, or $AUTOPOD_CONFIG)" },
  { name: "state", kind: "string", value: "DIR", help: "state directory (overrides state_dir)" },
  { name: "socket", kind: "string", value: "PATH", help: "agent socket (overrides socket; $AUTOPOD_SOCKET)" },
  { name: "log-level", kind: "string", value: "LEVEL", help: "debug, info, warn or error" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];
