/**
 * Paths the agent builds from names (pods, images) under its own directories.
 * Each part must be one plain path component, so no name can reach outside
 * the directory it is meant for, whatever validation came before.
 */
import { join } from "node:path";
import { InvalidArgumentError } from "../errors.ts";

/** `dir/part/part...`, refusing any part that is empty, ".", "..", or holds "/" or NUL. */
export function childPath(dir: string, ...parts: string[]): string {
  for (const p of parts) {
    if (p === "" || p === "." || p === ".." || p.includes("/") || p.includes("\0")) {
      throw new InvalidArgumentError(`Invalid path component "${p}" under "${dir}": a name may not hold "/" or be "." or ".."`);
    }
  }
  return join(dir, ...parts);
}
