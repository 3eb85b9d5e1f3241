/** Ids of the images this agent made, one a line in <state>/images.local: only their host paths (base, volumes) are trusted at restore. */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Ids of the images this agent made, one a line. */
const LOCAL_IMAGES = "images.local";

/** Images this agent made: only their host paths (base, volumes) are trusted at restore. */
export function markLocal(stateDir: string, id: string): void {
  appendFileSync(join(stateDir, LOCAL_IMAGES), `${id}\n`);
}

export function isLocal(stateDir: string, id: string): boolean {
  const p = join(stateDir, LOCAL_IMAGES);
  return existsSync(p) && readFileSync(p, "utf8").split("\n").includes(id);
}
