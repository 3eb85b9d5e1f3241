/**
 * Tells when a watched process exits, without polling: a pidfd per process
 * (pidfd_open works for any process, our child or not, so pods adopted from
 * an earlier agent are watched too), and one thread asleep in poll(2) on them
 * (exit-watch-thread.ts). An idle agent's only cost is that sleeping thread.
 */
import { closeSync, writeSync } from "node:fs";
import { eventfd, pidfdOpen } from "./libc.ts";

/** How many processes one watch can hold (the shared word list's size). */
const MAX_WATCHED = 4096;

export class ExitWatch {
  readonly #ctl = new Int32Array(new SharedArrayBuffer(4 * (4 + MAX_WATCHED)));
  readonly #wake: number;
  readonly #worker: Worker;
  /** pid -> its pidfd. */
  #fds = new Map<number, number>();
  #closed = false;

  /** `onExit` runs on the main thread after one or more watched processes exited; call rearm() when it has looked. */
  constructor(onExit: () => void) {
    this.#wake = eventfd();
    Atomics.store(this.#ctl, 2, this.#wake);
    this.#worker = new Worker(threadEntry());
    this.#worker.onmessage = (e: MessageEvent<string>) => {
      if (e.data === "exited" && !this.#closed) onExit();
    };
    this.#worker.unref();
    this.#worker.postMessage(this.#ctl.buffer);
  }

  /** Watch exactly these pids (those already gone are skipped: their end is seen by the caller's own check). */
  watch(pids: Iterable<number>): void {
    if (this.#closed) return;
    const want = new Set(pids);
    let changed = false;
    for (const [pid, fd] of this.#fds) {
      if (want.has(pid)) continue;
      this.#fds.delete(pid);
      closeSync(fd);
      changed = true;
    }
    for (const pid of want) {
      if (this.#fds.has(pid) || this.#fds.size >= MAX_WATCHED) continue;
      const fd = pidfdOpen(pid);
      if (fd === null) continue;
      this.#fds.set(pid, fd);
      changed = true;
    }
    if (!changed) return;
    const fds = [...this.#fds.values()];
    Atomics.store(this.#ctl, 3, 0);
    for (const [i, fd] of fds.entries()) Atomics.store(this.#ctl, 4 + i, fd);
    Atomics.store(this.#ctl, 3, fds.length);
    this.#poke();
  }

  /** Let the thread sleep again after onExit. */
  rearm(): void {
    Atomics.add(this.#ctl, 0, 1);
    Atomics.notify(this.#ctl, 0);
  }

  /** Which pids are watched, for tests. */
  get watched(): number[] {
    return [...this.#fds.keys()];
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctl, 1, 1);
    this.rearm();
    this.#poke();
    this.#worker.terminate();
    // The thread may still be in poll(2) on these fds: closing them only wakes it (POLLNVAL).
    for (const fd of this.#fds.values()) closeSync(fd);
    this.#fds.clear();
  }

  #poke(): void {
    const one = new BigUint64Array([1n]);
    writeSync(this.#wake, new Uint8Array(one.buffer));
  }
}

// Replaced at compile time by build.ts (`define`): where the binary holds exit-watch-thread.ts.
declare const AUTOPOD_EXIT_WATCH_THREAD: string | undefined;

function threadEntry(): string | URL {
  return typeof AUTOPOD_EXIT_WATCH_THREAD === "string" ? AUTOPOD_EXIT_WATCH_THREAD : new URL("./exit-watch-thread.ts", import.meta.url);
}
