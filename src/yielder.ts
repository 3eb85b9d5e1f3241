/**
 * Cooperative yielding for long work on the agent's one thread: after a slice
 * of work, let the event loop serve other requests (`ps`, other pods) before
 * going on. A microtask would not do: awaiting an already-buffered stream
 * never lets I/O callbacks run.
 */
export const DEFAULT_SLICE_MS = 10;

export class Yielder {
  readonly #sliceMs: number;
  #since = performance.now();

  constructor(sliceMs = DEFAULT_SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** Has the current slice of work run its time? */
  isDue(): boolean {
    return performance.now() - this.#since >= this.#sliceMs;
  }

  /** Let the event loop turn (timers, I/O), then start a new slice. */
  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#since = performance.now();
  }

  /** Yield if the slice is over. */
  async maybeYield(): Promise<void> {
    if (this.isDue()) await this.yield();
  }
}
