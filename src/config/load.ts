import type { z } from "zod";
import { InvalidArgumentError } from "../errors.ts";
import { ConfigSchema, DEFAULT_CONFIG_PATH, ENV_ALIASES, type Config } from "./schema.ts";

export type Origin = "default" | "file" | "env" | "flag";

export interface LoadedConfig {
  config: Config;
  path: string;
  fileFound: boolean;
  /** Where each set key came from, by dotted key. */
  origins: Record<string, Origin>;
  /** For keys set from the environment: the variable that set it (AUTOPOD_<SECTION>_<KEY>, or an alias of ENV_ALIASES). */
  envVars: Record<string, string>;
}

export interface LoadOptions {
  path?: string;
  env?: Record<string, string | undefined>;
  /** Dotted keys set by flags, e.g. { state_dir: "/x", "network.bridge": "br1" }. */
  flags?: Record<string, unknown>;
}

type Plain = Record<string, unknown>;

/** Load file, then environment, then flags, and validate once. */
export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const path = opts.path ?? env.AUTOPOD_CONFIG ?? DEFAULT_CONFIG_PATH;
  const origins: Record<string, Origin> = {};
  const envVars: Record<string, string> = {};
  let raw: Plain = {};
  let fileFound = false;
  const file = Bun.file(path);
  if (await file.exists()) {
    fileFound = true;
    const text = await file.text();
    try {
      raw = Bun.TOML.parse(text) as Plain;
    } catch (e) {
      throw new InvalidArgumentError(`Cannot parse config file "${path}": ${(e as Error).message}`);
    }
    for (const k of flattenKeys(raw)) origins[k] = "file";
  } else if (opts.path !== undefined || env.AUTOPOD_CONFIG !== undefined) {
    throw new InvalidArgumentError(`Config file "${path}" does not exist`);
  }

  for (const [key, envName, kind] of envKeys()) {
    const name = [envName, ENV_ALIASES[key]].find((n) => n !== undefined && env[n] !== undefined);
    if (name === undefined) continue;
    setDotted(raw, key, coerce(env[name]!, kind));
    origins[key] = "env";
    envVars[key] = name;
  }
  for (const [key, value] of Object.entries(opts.flags ?? {})) {
    if (value === undefined) continue;
    setDotted(raw, key, value);
    origins[key] = "flag";
  }

  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(describeIssues(parsed.error, raw, origins, envVars, path));
  return { config: parsed.data, path, fileFound, origins, envVars };
}

/** "network.subnet" -> "AUTOPOD_NETWORK_SUBNET" */
export function envNameOf(key: string): string {
  return "AUTOPOD_" + key.replaceAll(".", "_").toUpperCase();
}

type Kind = "string" | "number" | "boolean" | "array";

function kindOf(schema: z.ZodType): Kind {
  // biome-ignore lint/suspicious/noExplicitAny: walks zod's internal definition tree, which has no public type
  let s: any = schema;
  while (s?.def?.innerType) s = s.def.innerType;
  const t = s?.def?.type;
  if (t === "number") return "number";
  if (t === "boolean") return "boolean";
  if (t === "array") return "array";
  return "string";
}

/** Every leaf key of the schema with its environment variable name (sections nest: policy.lock.kind). */
export function envKeys(): Array<[string, string, Kind]> {
  const out: Array<[string, string, Kind]> = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string) => {
    for (const [k, v] of Object.entries(shape)) {
      // biome-ignore lint/suspicious/noExplicitAny: walks zod's internal definition tree, which has no public type
      let inner: any = v;
      while (inner?.def?.innerType) inner = inner.def.innerType;
      if (inner?.def?.type === "pipe") inner = inner.def.in;
      while (inner?.def?.innerType) inner = inner.def.innerType;
      const key = `${prefix}${k}`;
      if (inner?.def?.type === "object") walk(inner.shape as Record<string, z.ZodType>, `${key}.`);
      else out.push([key, envNameOf(key), kindOf(v)]);
    }
  };
  walk(ConfigSchema.shape as Record<string, z.ZodType>, "");
  return out;
}

function coerce(value: string, kind: Kind): unknown {
  switch (kind) {
    case "number":
      return value.trim() !== "" && !Number.isNaN(Number(value)) ? Number(value) : value;
    case "boolean":
      return value === "true" || value === "1" ? true : value === "false" || value === "0" ? false : value;
    case "array":
      return value === "" ? [] : value.split(",").map((s) => s.trim());
    default:
      return value;
  }
}

function setDotted(obj: Plain, key: string, value: unknown): void {
  const parts = key.split(".");
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== "object" || cur[p] === null) cur[p] = {};
    cur = cur[p] as Plain;
  }
  cur[parts[parts.length - 1]!] = value;
}

function getDotted(obj: Plain, key: string): unknown {
  let cur: unknown = obj;
  for (const p of key.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Plain)[p];
  }
  return cur;
}

function flattenKeys(obj: Plain, prefix = ""): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === "object" && v !== null && !Array.isArray(v) ? flattenKeys(v as Plain, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

function describeIssues(error: z.ZodError, raw: Plain, origins: Record<string, Origin>, envVars: Record<string, string>, path: string): string {
  const lines = error.issues.map((issue) => {
    const key = issue.path.join(".");
    if (issue.code === "unrecognized_keys") {
      const keys = issue.keys.map((k) => (key ? `${key}.${k}` : k));
      return `unknown key ${keys.map((k) => `"${k}"`).join(", ")} (in ${path})`;
    }
    const value = getDotted(raw, key);
    const origin = origins[key];
    const from =
      origin === "env" ? ` (from ${envVars[key] ?? envNameOf(key)})` : origin === "flag" ? " (from a flag)" : origin === "file" ? ` (in ${path})` : "";
    return `${key}${value === undefined ? " (not set)" : ` = ${JSON.stringify(value)}`}${from}: expected ${expectedOf(issue)}`;
  });
  return `Invalid configuration: ${lines.join("; ")}`;
}

function expectedOf(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") return `a ${issue.expected}`;
  if (issue.code === "invalid_value") return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  // A schema's own message says more than the bound alone ("at least one day: a window without days never opens").
  if (issue.code === "too_small") return issue.message.startsWith("Too small") ? `at least ${String(issue.minimum)}` : issue.message;
  if (issue.code === "too_big") return `at most ${String(issue.maximum)}`;
  return issue.message.replace(/^Invalid input: /, "");
}
