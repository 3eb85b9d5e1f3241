/** What checkpoint, restore and recovery share: their dependencies, the per-pod claim, and lifting a pod's network locks. */
import type { ImageTrust } from "../trust/image-trust.ts";
import { ConflictError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { CheckpointHost } from "../platform/checkpoint-host.ts";
import type { PodRuntime } from "../pods/runtime.ts";
import type { ChunkStore } from "../store/chunk-store.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import type { FileEntry } from "../image/manifest.ts";

export interface CheckpointerOptions {
  stateDir: string;
  pods: PodRuntime;
  store: ChunkStore;
  catalogue: ImageCatalogue;
  /** Configured criu path ("" = search). */
  criu: string;
  log: Logger;
  /** The operating system: CRIU, network locks, processes (platform/linux/checkpoint-host.ts). */
  host: CheckpointHost;
  /** Signs the images this host makes, and says which images are its own. */
  trust: ImageTrust;
  /** Hash page images while CRIU writes them (config checkpoint.page_tail); default true. */
  isPageTailOn?: boolean;
}

/** The dependencies of every step, and the state the Checkpointer keeps between operations. */
export interface CheckpointContext extends CheckpointerOptions {
  /** One checkpoint or restore per pod at a time. */
  busy: Set<string>;
  /** The last capture of each base (root file system) a checkpoint included, by path. */
  baseCaptures: Map<string, { fingerprint: string; entries: FileEntry[] }>;
}

export function claim(ctx: CheckpointContext, name: string): void {
  if (ctx.busy.has(name)) throw new ConflictError(`Pod "${name}" is already being checkpointed or restored`);
  ctx.busy.add(name);
}

/** Lift every lock from a pod's network: ours and any CRIU left behind. */
export async function unlockAll(host: CheckpointHost, netnsPath: string): Promise<void> {
  await host.removeCriuLock(netnsPath).catch(() => []);
  await host.unlockNetwork(netnsPath).catch(() => undefined);
}
