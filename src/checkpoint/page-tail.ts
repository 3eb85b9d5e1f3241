/**
 * Hash CRIU's page images while CRIU writes them. `criu dump` appends each
 * task's pages to pages-N.img in order and never goes back; the pages of a
 * 1 GiB pod take about as long to hash on one core as CRIU takes to write
 * them, so hashing them as they land, on the core CRIU leaves free, takes
 * most of the hashing off the checkpoint's critical path.
 *
 * Each page image is also written to disk as it grows (writeBehind): the
 * disk then works while CRIU does, and the commit's fsync finds it written.
 *
 * Only bytes below a file's current size are read. When CRIU has exited,
 * finish() fixes each file's end at its size then and hands the results to
 * captureTree (options.hashing), which checks each against the size it finds.
 *
 * CRIU's dump itself keeps both cores of a small machine busy (the parasite
 * splices pages into a pipe, CRIU splices them into the file), so hashing
 * alongside makes the dump longer: worth it for a stop-checkpoint, whose
 * total is its freeze, not for --leave-running, whose freeze is the dump.
 */
import fs from "node:fs";
import path from "node:path";
import { ChunkWorkers, type FileHashes, type GrowingHash } from "../store/chunk-workers.ts";
import { PAGE_SIZE } from "../image/manifest.ts";

const PAGES = /^pages-\d+\.img$/;

export class PageTail {
  readonly #dir: string;
  readonly #workers: ChunkWorkers;
  readonly #files = new Map<string, GrowingHash>();
  readonly #writing: Array<{ finish(): Promise<number> }> = [];
  #watcher: fs.FSWatcher | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;
  #isOver = false;
  readonly #isOn: boolean;

  readonly #isWriteBehindOn: boolean;

  /**
   * Start watching `dir` (CRIU's empty image directory) for page images; with `isOn` false, do nothing.
   * `isWriteBehindOn` false: the pages are only hashed, not written ahead (most of them are stored
   * already, as in a migration's freeze after its rounds: the file goes once its few new chunks are
   * stored, and writing it ahead would put a whole pod's memory on the disk inside the freeze).
   */
  constructor(dir: string, options: { isOn?: boolean; isWriteBehindOn?: boolean; workers?: ChunkWorkers } = {}) {
    this.#dir = dir;
    this.#workers = options.workers ?? ChunkWorkers.shared();
    this.#isOn = options.isOn !== false;
    this.#isWriteBehindOn = options.isWriteBehindOn !== false;
    if (!this.#isOn) {
      this.#isOver = true;
      return;
    }
    try {
      this.#watcher = fs.watch(dir, () => this.#scan());
      this.#watcher.on("error", () => undefined);
    } catch {
      this.#watcher = null;
    }
    // inotify can miss nothing here, but a poll costs little and covers any watcher trouble.
    this.#poll = setInterval(() => this.#scan(), 20);
    this.#scan();
  }

  /** Whether page images are hashed as they are written (else finish() hands over nothing). */
  get isOn(): boolean {
    return this.#isOn;
  }

  /** Page images found so far. */
  get files(): number {
    return this.#files.size;
  }

  /** Bytes of page images hashed so far. */
  get hashedBytes(): number {
    let n = 0;
    for (const h of this.#files.values()) n += h.hashedBytes;
    return n;
  }

  /** CRIU has exited successfully: every page image ends where it is now. Results by file name. */
  finish(): Map<string, Promise<FileHashes>> {
    const wasOn = this.#watcher !== null || this.#poll !== null;
    this.#stop();
    if (wasOn) this.#scan(true);
    const out = new Map<string, Promise<FileHashes>>();
    for (const [name, h] of this.#files) {
      h.finish();
      out.set(name, h.result);
    }
    for (const w of this.#writing) void w.finish();
    return out;
  }

  /** CRIU failed: stop hashing. */
  abort(): void {
    this.#stop();
    for (const h of this.#files.values()) h.abort("the dump did not finish");
    for (const w of this.#writing) void w.finish();
  }

  #stop(): void {
    this.#isOver = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = null;
  }

  #scan(isFinal = false): void {
    if (this.#isOver && !isFinal) return;
    let names: string[];
    try {
      names = fs.readdirSync(this.#dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!PAGES.test(name) || this.#files.has(name)) continue;
      const file = path.join(this.#dir, name);
      this.#files.set(name, this.#workers.hashGrowingFile(file, PAGE_SIZE));
      if (this.#isWriteBehindOn) this.#writing.push(this.#workers.writeBehind(file));
    }
  }
}
