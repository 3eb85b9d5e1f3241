/**
 * The journal of a migration, one file per migration in <state>/migrations on
 * each side: written before each step that changes what runs where, so a
 * restarted agent finishes or undoes it (recovery.ts). The source's file is
 * also its answer to "what became of migration ID?" (outcome.ts).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { childPath } from "../pods/child-path.ts";

export const MIGRATION_DIR = "migrations";

/**
 * Source: precopy -> frozen -> committed (-> removed once the destination resumed); post-copy: frozen ->
 * postcopy (the destination's copy runs and pulls its pages; ours stays stopped) -> committed.
 * Destination: restoring -> ready (-> removed); post-copy: restoring -> postcopy (running, pulling) (-> removed).
 */
export type SourcePhase = "precopy" | "frozen" | "postcopy" | "committed";
export type DestinationPhase = "restoring" | "ready" | "postcopy";

export interface SourceJournal {
  role: "source";
  id: string;
  pod: string;
  peer: string;
  phase: SourcePhase;
  image: string | null;
  pid: number | null;
  /** Shared with the destination only: its resume and abort requests must carry it. */
  secret: string;
}

export interface DestinationJournal {
  role: "destination";
  id: string;
  pod: string;
  peer: string;
  phase: DestinationPhase;
  image: string;
  pid: number | null;
  secret: string;
}

export type MigrationJournal = SourceJournal | DestinationJournal;

const ID = /^[0-9a-f-]{36}$/;

/** A migration id (a UUID) from the wire, or null. */
export function isMigrationId(s: string): boolean {
  return ID.test(s);
}

export function writeMigrationJournal(stateDir: string, j: MigrationJournal): void {
  mkdirSync(join(stateDir, MIGRATION_DIR), { recursive: true, mode: 0o700 });
  const p = childPath(stateDir, MIGRATION_DIR, `${j.id}.json`);
  writeFileSync(`${p}.tmp`, JSON.stringify(j));
  renameSync(`${p}.tmp`, p);
}

export function readMigrationJournal(stateDir: string, id: string): MigrationJournal | null {
  if (!isMigrationId(id)) return null;
  try {
    return JSON.parse(readFileSync(childPath(stateDir, MIGRATION_DIR, `${id}.json`), "utf8")) as MigrationJournal;
  } catch {
    return null;
  }
}

export function removeMigrationJournal(stateDir: string, id: string): void {
  if (isMigrationId(id)) rmSync(childPath(stateDir, MIGRATION_DIR, `${id}.json`), { force: true });
}

/** Every journal in the directory (unreadable ones are dropped). */
export function listMigrationJournals(stateDir: string): MigrationJournal[] {
  const dir = join(stateDir, MIGRATION_DIR);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: MigrationJournal[] = [];
  for (const f of names) {
    if (!f.endsWith(".json")) continue;
    const j = readMigrationJournal(stateDir, f.slice(0, -5));
    if (j) out.push(j);
    else rmSync(join(dir, f), { force: true });
  }
  return out;
}
