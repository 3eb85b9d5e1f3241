/**
 * Live patches loaded into the running kernel (/sys/kernel/livepatch):
 * each patch's directory holds "enabled" and "transition" flags.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LivepatchReason } from "./checker.ts";

/** Every live patch, or none when the kernel has no livepatch support. */
export async function readLivepatches(sysDir: string): Promise<LivepatchReason[]> {
  const dir = join(sysDir, "kernel/livepatch");
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const flag = async (name: string, file: string) => {
    try {
      return (await readFile(join(dir, name, file), "utf8")).trim() === "1";
    } catch {
      return false;
    }
  };
  const out: LivepatchReason[] = [];
  for (const name of names.sort()) out.push({ kind: "livepatch", name, enabled: await flag(name, "enabled"), in_transition: await flag(name, "transition") });
  return out;
}
