/**
 * The journal of an unfinished checkpoint or restore: one file per pod in
 * <state>/journal, written before anything of the pod changes and removed when
 * the operation ends, so a restarted agent can finish or undo it (recovery.ts).
 */
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { childPath } from "../pods/child-path.ts";

/** The journal of an unfinished checkpoint or restore, for crash recovery. */
export interface Journal {
  kind: "checkpoint" | "restore";
  pod: string;
  tmp: string;
  pid: number | null;
  criuPid: number | null;
  imageId: string | null;
  leaveRunning: boolean;
}

export const JOURNAL_DIR = "journal";
/** In a restore's directory while its tasks are restored, stopped, and their page images still being checked. */
export const UNVERIFIED = "unverified";
/** In a restore's directory: where CRIU writes its log, stats and pid file (never the images' directory). */
export const CRIU_WORK = "criu-work";

export function writeJournal(stateDir: string, j: Journal): void {
  const p = childPath(stateDir, JOURNAL_DIR, `${j.pod}.json`);
  writeFileSync(`${p}.tmp`, JSON.stringify(j));
  renameSync(`${p}.tmp`, p);
}

export function removeJournal(stateDir: string, pod: string): void {
  rmSync(childPath(stateDir, JOURNAL_DIR, `${pod}.json`), { force: true });
}
