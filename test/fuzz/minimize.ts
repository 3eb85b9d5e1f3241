/**
 * Shrink an input that found something to one that still finds it: drop the
 * base tree, then halves, quarters, ... of each tree's entries (delta
 * debugging), rebuilding the export with true hashes each time. An input
 * whose container itself was mutated is kept as it is.
 */
import { layoutOf, parseExport, type RawEntry, rawTrees, serialize } from "./export-file.ts";

/** The smallest input found within `budget` tries for which `stillFinds` holds. */
export async function minimize(bytes: Uint8Array, stillFinds: (b: Uint8Array) => Promise<boolean>, budget = 150): Promise<Uint8Array> {
  let model: ReturnType<typeof parseExport>;
  try {
    model = parseExport(bytes);
  } catch {
    return bytes;
  }
  let best = bytes;
  let tries = 0;
  const attempt = async (): Promise<boolean> => {
    if (tries++ >= budget) return false;
    const b = serialize(layoutOf(model));
    if (await stillFinds(b)) {
      best = b;
      return true;
    }
    return false;
  };
  if (model.manifest.base !== undefined) {
    const base = model.manifest.base;
    delete model.manifest.base;
    if (!(await attempt())) model.manifest.base = base;
  }
  for (const tree of rawTrees(model.manifest)) {
    const list = tree.entries;
    for (let chunk = Math.ceil(list.length / 2); chunk >= 1 && tries < budget; chunk = Math.floor(chunk / 2)) {
      for (let at = 0; at < list.length && tries < budget; ) {
        const removed: RawEntry[] = list.splice(at, chunk);
        if (removed.some((e) => e.path === ".") || !(await attempt())) {
          list.splice(at, 0, ...removed);
          at += chunk;
        }
      }
    }
  }
  return best;
}
