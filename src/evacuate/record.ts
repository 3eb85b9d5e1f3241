/**
 * The evacuation record: which pods left this host and where to, so they can
 * be brought home after the update and reboot. One JSON file in the state
 * directory, written atomically (a reader sees the old or the new file,
 * whole) after every pod's outcome, and read back checked: a pod that is
 * away is either on a peer (migrated) or checkpointed here (suspended).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { readIfExists, writeFileAtomic } from "./_files.ts";
import { PreconditionError } from "../errors.ts";

export const RECORD_FILE = "evacuation.json";

const podName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const imageId = z.string().regex(/^[0-9a-f]{64}$/);

const AwayPodSchema = z.discriminatedUnion("outcome", [
  z.object({ pod: podName, outcome: z.literal("migrated"), to: z.string().min(1).max(63), at: z.string().max(40) }).strict(),
  z.object({ pod: podName, outcome: z.literal("suspended"), image: imageId, at: z.string().max(40) }).strict(),
]);

const RecordSchema = z.object({ version: z.literal(1), pods: z.array(AwayPodSchema).max(100_000) }).strict();

export type AwayPod = z.infer<typeof AwayPodSchema>;

/** The pods this host has sent away and not yet brought home. */
export function readRecord(stateDir: string): AwayPod[] {
  const path = join(stateDir, RECORD_FILE);
  const text = readIfExists(path);
  if (text === null) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new PreconditionError(`The evacuation record "${path}" is not JSON: ${(e as Error).message}`);
  }
  const r = RecordSchema.safeParse(parsed);
  if (!r.success) throw new PreconditionError(`The evacuation record "${path}" is not valid: ${r.error.issues[0]?.message ?? "unknown shape"}`);
  return r.data.pods;
}

/** Replace the record with `pods`; no pods: no file. */
export function writeRecord(stateDir: string, pods: readonly AwayPod[]): void {
  const path = join(stateDir, RECORD_FILE);
  if (pods.length === 0) {
    rmSync(path, { force: true });
    return;
  }
  writeFileAtomic(path, `${JSON.stringify({ version: 1, pods }, null, 1)}\n`);
}

/** Add (or replace, by pod name) one away pod. */
export function recordAway(stateDir: string, pod: AwayPod): void {
  writeRecord(stateDir, [...readRecord(stateDir).filter((p) => p.pod !== pod.pod), pod]);
}

/** A pod is home: it leaves the record. */
export function recordHome(stateDir: string, pod: string): void {
  writeRecord(
    stateDir,
    readRecord(stateDir).filter((p) => p.pod !== pod),
  );
}
