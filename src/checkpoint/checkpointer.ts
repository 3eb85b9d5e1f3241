/**
 * Checkpoint and restore of pods: drives CRIU through the pod runtime's
 * hooks and turns its image set, the pod's writable layer, its base and its
 * volumes into one manifest over content-addressed chunks, and back.
 *
 * The Checkpointer is the facade the agent and the local API use; the work is
 * in named steps: checkpoint.ts, restore.ts, recovery.ts (with journal.ts),
 * host-compat.ts and placement.ts. It speaks to the OS only through its
 * CheckpointHost (platform/checkpoint-host.ts).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ImageInfo } from "../store/image-catalogue.ts";
import type { CheckpointContext, CheckpointerOptions } from "./_context.ts";
import type { OnProgress } from "../progress.ts";
import { type CheckpointRequest, type CheckpointResult, checkpointPod } from "./checkpoint.ts";
import { requireCriu } from "./host-compat.ts";
import { JOURNAL_DIR } from "./journal.ts";
import { recover } from "./recovery.ts";
import { type RestoreRequest, type RestoreResult, resolveImage, restorePod } from "./restore.ts";
import { resolveRestoreRef } from "./restore-ref.ts";

export type { CheckpointContext, CheckpointerOptions } from "./_context.ts";
/** For a migration that composes the steps (src/migrate/): the per-pod claim, and lifting a pod's network locks. */
export { claim, unlockAll } from "./_context.ts";
export type { CheckpointRequest, CheckpointResult } from "./checkpoint.ts";
export type { RestoreRequest, RestoreResult } from "./restore.ts";

export class Checkpointer {
  readonly #ctx: CheckpointContext;

  constructor(o: CheckpointerOptions) {
    this.#ctx = { ...o, busy: new Set(), baseCaptures: new Map() };
    mkdirSync(join(o.stateDir, "tmp"), { recursive: true, mode: 0o700 });
    mkdirSync(join(o.stateDir, JOURNAL_DIR), { recursive: true, mode: 0o700 });
  }

  /** The steps' shared context, for a migration that composes them (src/migrate/). */
  get context(): CheckpointContext {
    return this.#ctx;
  }

  /** The CRIU binary, checked against this kernel. */
  async criu(): Promise<{ path: string; version: string }> {
    return requireCriu(this.#ctx.host, this.#ctx.criu);
  }

  async checkpoint(name: string, req: CheckpointRequest, onProgress?: OnProgress): Promise<CheckpointResult> {
    return checkpointPod(this.#ctx, name, req, onProgress);
  }

  async restore(imageRef: string, req: RestoreRequest): Promise<RestoreResult> {
    return restorePod(this.#ctx, imageRef, req);
  }

  /** A full image id from a unique prefix of at least 4 hex digits. */
  resolveImage(ref: string): string {
    return resolveImage(this.#ctx.catalogue, ref);
  }

  /** A full image id from an id, a unique prefix, or a pod name (its latest image); refused when it could be both. */
  resolveRestoreRef(ref: string): string {
    return resolveRestoreRef(this.#ctx.catalogue, ref);
  }

  images(): ImageInfo[] {
    return this.#ctx.catalogue.list();
  }

  /**
   * After an agent restart, before the pod runtime recovers: finish or undo
   * the checkpoints and restores that were running when the agent died (recovery.ts).
   */
  async recover(): Promise<void> {
    return recover(this.#ctx);
  }
}
