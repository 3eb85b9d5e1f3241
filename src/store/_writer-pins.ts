/**
 * What a chunk writer pins so that gc keeps it while the writer is open:
 * chunks it relies on that are in the index (found there, trusted, or
 * committed by it), which missing() then trusts without a query; and chunks
 * leased by ChunkWriter.pin(), kept but not known to be stored.
 */
import { HASH_BYTES } from "../image/hash.ts";
import { HashTable } from "../image/hash-table.ts";
import { isZeroAt } from "./_entries.ts";

/** A writer's pins (ChunkWriter's #pins). */
export class WriterPins {
  /** Chunks in the index that the writer relies on. */
  readonly #stored = new HashTable();
  /** What earlier commits of the writer made visible: pinned as well (kept whole rather than copied into #stored). */
  readonly #committed: HashTable[] = [];
  /** Chunks pinned by pin(), by hex hash. */
  readonly #leased = new Set<string>();

  /** Pin the chunk (32 bytes at `at`), known to be in the index. */
  add(src: Uint8Array, at = 0): void {
    this.#stored.add(src, at);
  }

  /** Pin the chunks of a list (n × 32 bytes) known to be in the index: all but zero markers, or with `mask` those flagged 1. */
  addList(hashes: Uint8Array, mask?: Uint8Array): void {
    const n = hashes.byteLength / HASH_BYTES;
    for (let i = 0; i < n; i++) {
      if (mask !== undefined && mask[i] !== 1) continue;
      if (isZeroAt(hashes, i * HASH_BYTES)) continue;
      this.#stored.add(hashes, i * HASH_BYTES);
    }
  }

  /** Pin every chunk of `table`, which a commit just made visible. */
  addCommitted(table: HashTable): void {
    this.#committed.push(table);
    // A writer that commits often (batches of a transfer) keeps lookups short.
    if (this.#committed.length > 4) {
      for (const t of this.#committed.splice(0)) for (const h of t.hashes()) this.#stored.add(h);
    }
  }

  /** Whether the chunk (32 bytes at `at`) is pinned as in the index (leases do not count). */
  has(src: Uint8Array, at = 0): boolean {
    if (this.#stored.has(src, at)) return true;
    for (const t of this.#committed) if (t.has(src, at)) return true;
    return false;
  }

  /** Pin a chunk not known to be stored, by its hex hash. */
  lease(hex: string): void {
    this.#leased.add(hex);
  }

  /** Every hash gc must keep. */
  *hashes(): Generator<Uint8Array> {
    yield* this.#stored.hashes();
    for (const t of this.#committed) yield* t.hashes();
    for (const hex of this.#leased) yield Buffer.from(hex, "hex");
  }

  /** Drop every pin. */
  clear(): void {
    this.#stored.clear();
    this.#committed.length = 0;
    this.#leased.clear();
  }
}
