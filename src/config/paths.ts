/** Path rules and defaults of the config that code without the schema (the CLI's socket lookup) shares with it. */

export const DEFAULT_CONFIG_PATH = "/etc/autopod/autopod.toml";
export const DEFAULT_SOCKET = "/run/autopod/autopod.sock";

/** An absolute path with no ".." component: what the config accepts for a path. */
export function isCleanAbsolutePath(s: string): boolean {
  return s.startsWith("/") && !s.split("/").includes("..");
}
