import { InvalidArgumentError } from "../errors.ts";

/** One flag a command accepts. `repeat` collects every occurrence. */
export interface OptionSpec {
  name: string; // long name without dashes
  short?: string; // one letter, without dash
  kind: "boolean" | "string" | "repeat";
  value?: string; // placeholder shown in help, e.g. "DIR"
  help: string;
}

export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Everything after a bare `--`, untouched. */
  rest: string[];
  /** True when `--` was present. */
  hasRest: boolean;
}

export interface ParseOptions {
  /** Stop parsing flags at the first positional past this many (for `run NAME -- CMD`, `exec NAME CMD...`). */
  stopAfterPositionals?: number;
}

/**
 * Parse argv against a flag spec. Unknown flags and flags without their value
 * are errors that name the flag; nothing here ever reaches a shell.
 */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], opts: ParseOptions = {}): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags: ParsedArgs["flags"] = {};
  const positionals: string[] = [];
  for (const s of specs) if (s.kind === "repeat") flags[s.name] = [];

  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    if (arg === "--") {
      return { flags, positionals, rest: argv.slice(i + 1), hasRest: true };
    }
    if (opts.stopAfterPositionals !== undefined && positionals.length >= opts.stopAfterPositionals && !arg.startsWith("-")) {
      return { flags, positionals, rest: argv.slice(i), hasRest: false };
    }
    let spec: OptionSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith("--") && arg.length > 2) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (eq !== -1) inline = arg.slice(eq + 1);
      spec = byName.get(name);
      if (!spec) throw new InvalidArgumentError(`Unknown option "--${name}"`);
    } else if (/^-[A-Za-z]{2,}$/.test(arg) && [...arg.slice(1)].every((l) => byShort.get(l)?.kind === "boolean")) {
      // Short booleans run together, as `exec -it`. Anything else of that shape stays a positional ("-web" is refused as a name).
      for (const letter of arg.slice(1)) flags[byShort.get(letter)!.name] = true;
      i++;
      continue;
    } else if (arg.startsWith("-") && arg.length === 2 && arg !== "-") {
      spec = byShort.get(arg.slice(1));
      if (!spec) throw new InvalidArgumentError(`Unknown option "${arg}"`);
    } else {
      positionals.push(arg);
      i++;
      continue;
    }
    if (spec.kind === "boolean") {
      if (inline !== undefined) throw new InvalidArgumentError(`Option "--${spec.name}" takes no value`);
      flags[spec.name] = true;
      i++;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next === "--" || (next.startsWith("-") && next !== "-" && next.length > 1)) {
        throw new InvalidArgumentError(`Option "--${spec.name}" needs a value${spec.value ? ` (${spec.value})` : ""}`);
      }
      value = next;
      i += 2;
    } else {
      i++;
    }
    if (spec.kind === "repeat") (flags[spec.name] as string[]).push(value);
    else flags[spec.name] = value;
  }
  return { flags, positionals, rest: [], hasRest: false };
}

export function flagString(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === "string" ? v : undefined;
}

export function flagBool(p: ParsedArgs, name: string): boolean {
  return p.flags[name] === true;
}

export function flagList(p: ParsedArgs, name: string): string[] {
  const v = p.flags[name];
  return Array.isArray(v) ? v : [];
}

/** Render the options block of a command's --help. */
export function formatOptions(specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const left = `${s.short ? `-${s.short}, ` : "    "}--${s.name}${s.kind === "boolean" ? "" : ` ${s.value ?? "VALUE"}`}`;
    return [left, s.help + (s.kind === "repeat" ? " (repeatable)" : "")] as const;
  });
  const width = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, h]) => `  ${l.padEnd(width)}  ${h}`).join("\n");
}
