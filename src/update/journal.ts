/**
 * The update cycle's journal: which step it is at, on disk, written before
 * each step starts (write, fsync, rename), so that the agent started after
 * the reboot knows it is finishing an update, and an agent that died
 * mid-step knows what it left half done.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { InvalidArgumentError } from "../errors.ts";

export const PHASES = ["locking", "evacuating", "evacuated", "updating", "rebooting", "finishing"] as const;
export type CyclePhase = (typeof PHASES)[number];

const LockHandleSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("none") }),
  z.object({ kind: z.literal("etcd"), key: z.string(), lease: z.string().regex(/^\d{1,20}$/) }),
  z.object({ kind: z.literal("fleetlock"), id: z.string(), group: z.string() }),
]);
export type LockHandle = z.infer<typeof LockHandleSchema>;

const JournalSchema = z.object({
  version: z.literal(1),
  /** This cycle's id, on its events. */
  cycle: z.string().regex(/^[a-zA-Z0-9-]{1,64}$/),
  phase: z.enum(PHASES),
  mode: z.string(),
  /** Why it started: the triggers the status met. */
  reasons: z.array(z.string()),
  boot_id: z.string(),
  started_at: z.string(),
  lock: LockHandleSchema.nullable(),
  /** The evacuation happened (so pods may be elsewhere). */
  evacuated: z.boolean(),
  /** When each phase began (ms since the epoch), for the cycle's report. */
  phase_started: z.record(z.string(), z.number()),
});
export type Journal = z.infer<typeof JournalSchema>;

export class CycleJournal {
  constructor(readonly path: string) {}

  /** The journal on disk; null when no cycle is under way. A damaged one is an error: a person must look. */
  read(): Journal | null {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new InvalidArgumentError(`The update journal "${this.path}" is not valid JSON`);
    }
    const parsed = JournalSchema.safeParse(raw);
    if (!parsed.success)
      throw new InvalidArgumentError(`The update journal "${this.path}" is not a journal this agent knows: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  write(j: Journal): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify(j, null, 2) + "\n");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dfd = openSync(dirname(this.path), "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  clear(): void {
    try {
      unlinkSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
}
