/**
 * The local API's socket, for the CLI, without the config schema: zod's
 * schema and its first parse cost the CLI two to three times its own start,
 * and the CLI needs nothing of the config but this path. Same order as
 * loadConfig: the --socket flag, then AUTOPOD_SOCKET, then the config file's
 * `socket`, then the default. When only the full loader can answer (an
 * explicit config file that is missing, one that does not parse, a socket
 * that is not a clean absolute path) it answers null, and the caller loads the
 * config, whose error explains.
 */
import { DEFAULT_CONFIG_PATH, DEFAULT_SOCKET, isCleanAbsolutePath } from "./paths.ts";

export interface SocketOptions {
  /** --config */
  path?: string;
  /** --socket */
  flag?: string;
  env?: Record<string, string | undefined>;
}

/** The socket path the full config would name, or null when the full loader must decide. */
export async function quickSocket(opts: SocketOptions = {}): Promise<string | null> {
  const env = opts.env ?? process.env;
  const path = opts.path ?? env.AUTOPOD_CONFIG ?? DEFAULT_CONFIG_PATH;
  const isExplicit = opts.path !== undefined || env.AUTOPOD_CONFIG !== undefined;
  const given = opts.flag ?? env.AUTOPOD_SOCKET;
  const file = Bun.file(path);
  const exists = await file.exists();
  if (!exists && isExplicit) return null;
  if (given !== undefined) return isCleanAbsolutePath(given) ? given : null;
  if (!exists) return DEFAULT_SOCKET;
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(await file.text());
  } catch {
    return null;
  }
  const socket = (raw as Record<string, unknown>).socket;
  if (socket === undefined) return DEFAULT_SOCKET;
  return typeof socket === "string" && isCleanAbsolutePath(socket) ? socket : null;
}
