/**
 * A checkpoint's progress for the CLI's line: the current phase, with bytes
 * read from a counter that the work updates (CRIU's pages hashed, the chunk
 * writer's new bytes), sampled a few times a second so the hot paths never
 * call out per chunk.
 */
import type { OnProgress } from "../progress.ts";

export class ProgressTicker {
  readonly #onProgress: OnProgress | undefined;
  #phase = "";
  #bytes: () => number = () => 0;
  #totalBytes: number | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(onProgress: OnProgress | undefined, intervalMs = 200) {
    this.#onProgress = onProgress;
    if (onProgress) this.#timer = setInterval(() => this.#tell(), intervalMs);
  }

  /** Enter `phase`, whose bytes `bytes()` reads (none when not given), of `totalBytes` when known. */
  phase(phase: string, bytes: () => number = () => 0, totalBytes: number | null = null): void {
    this.#phase = phase;
    this.#bytes = bytes;
    this.#totalBytes = totalBytes;
    this.#tell();
  }

  /** Stop sampling (the work is over, done or failed). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tell(): void {
    if (this.#onProgress && this.#phase !== "") this.#onProgress({ phase: this.#phase, bytes: this.#bytes(), totalBytes: this.#totalBytes });
  }
}
