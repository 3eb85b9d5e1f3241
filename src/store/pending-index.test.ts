/** The pending index (pending-index.ts): chunks of adopted files answered for at once, merged into the index later. */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkStore } from "./chunk-store.ts";
import { ChunkWorkers } from "./chunk-workers.ts";
import { sha256 } from "../image/hash.ts";

let dir: string;
let store: ChunkStore;
const pool = new ChunkWorkers(2);
afterAll(() => pool.close());

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

function _packFiles(d: string): string[] {
  return fs.readdirSync(path.join(d, "packs")).sort();
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "chunk-store-"));
  store = ChunkStore.open(dir);
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("deferred indexing of adopted files", () => {
  async function adoptOne(pages: number) {
    const data = random(pages * 4096);
    const file = path.join(dir, `pages-${Math.random().toString(16).slice(2)}.img`);
    fs.writeFileSync(file, data);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("adopt");
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    return { fh, data };
  }

  test("chunks of an adopted file are answered for at once, and indexed later in the background", async () => {
    const { fh, data } = await adoptOne(40_000);
    expect(store.pendingIndexSize).toBe(40_000);
    expect(store.db.query("SELECT COUNT(*) AS n FROM chunks").get()).toEqual({ n: 0 });
    const h = fh.hashes.subarray(123 * 32, 124 * 32);
    expect(store.has(h)).toBe(true);
    expect(Buffer.compare(store.get(h), data.subarray(123 * 4096, 124 * 4096))).toBe(0);
    expect(store.missing([h, sha256(new Uint8Array([1]))]).length).toBe(1);
    expect(store.locate(fh.hashes)[123]).toEqual({ pack: expect.any(Number), offset: 123 * 4096, length: 4096, headerBytes: 0 });
    // A new writer dedups against them.
    const w = store.writer("again");
    expect(w.has(h)).toBe(true);
    w.close();
    for (let i = 0; i < 200 && store.pendingIndexSize > 0; i++) await Bun.sleep(20);
    expect(store.pendingIndexSize).toBe(0);
    expect(store.db.query("SELECT COUNT(*) AS n FROM chunks").get()).toEqual({ n: 40_000 });
    expect(store.db.query("SELECT COUNT(*) AS n FROM pending_index").get()).toEqual({ n: 0 });
    expect(Buffer.compare(store.get(h), data.subarray(123 * 4096, 124 * 4096))).toBe(0);
  });

  test("a store closed (or crashed) before the merge answers for them after reopening, and merges", async () => {
    const { fh } = await adoptOne(5000);
    // The adopted file's chunks are not written out a row each: the file itself is the record.
    expect(store.db.query("SELECT length(entries) AS n FROM pending_index").get()).toEqual({ n: 0 });
    expect(store.db.query("SELECT COUNT(*) AS n FROM pending_raw").get()).toEqual({ n: 1 });
    store.close();
    store = ChunkStore.open(dir);
    expect(store.pendingIndexSize).toBe(5000);
    expect(store.has(fh.hashes.subarray(4999 * 32))).toBe(true);
    // A merge cut short by a crash: some rows in, the pending row still there. Merging again is harmless.
    store.db.run("INSERT INTO chunks(hash, pack, offset, length) VALUES (?, 1, 0, 4096)", [fh.hashes.subarray(0, 32)]);
    store.mergePending();
    expect(store.pendingIndexSize).toBe(0);
    expect(store.db.query("SELECT COUNT(*) AS n FROM chunks").get()).toEqual({ n: 5000 });
    expect(store.verifyAll()).toEqual({ checked: 5000, corrupt: [] });
  });

  test("after a restart, an adopted file is hashed again (zero pages left out) and chunks packed in the same commit come from the record", async () => {
    const data = random(300 * 4096);
    data.fill(0, 10 * 4096, 20 * 4096);
    const file = path.join(dir, "pages-9.img");
    fs.writeFileSync(file, data);
    const fh = await pool.hashFile(file, 4096);
    const small = random(1000);
    const w = store.writer("mixed");
    const hs = w.put(small);
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    expect(store.pendingIndexSize).toBe(291);
    store.close();
    store = ChunkStore.open(dir);
    expect(store.pendingIndexSize).toBe(291);
    expect(store.get(hs)).toEqual(small);
    expect(Buffer.compare(store.get(fh.hashes.subarray(299 * 32, 300 * 32)), data.subarray(299 * 4096))).toBe(0);
    store.mergePending();
    expect(store.db.query("SELECT COUNT(*) AS n FROM pending_raw").get()).toEqual({ n: 0 });
    expect(store.verifyAll()).toEqual({ checked: 291, corrupt: [] });
  });

  test("background merging waits while held (a checkpoint or restore runs), and goes on once released", async () => {
    const release = store.holdMerging();
    const { fh } = await adoptOne(20_000);
    await Bun.sleep(600);
    expect(store.pendingIndexSize).toBe(20_000);
    expect(store.has(fh.hashes.subarray(0, 32))).toBe(true); // answered from memory meanwhile
    release();
    release(); // twice is once
    for (let i = 0; i < 200 && store.pendingIndexSize > 0; i++) await Bun.sleep(20);
    expect(store.pendingIndexSize).toBe(0);
  });

  test("gc and stats see pending chunks (they merge first)", async () => {
    const { fh } = await adoptOne(3000);
    expect(store.stats().chunks).toBe(3000);
    const keep = fh.hashes.subarray(0, 32);
    const { fh: other } = await adoptOne(100);
    const r = store.gc([keep]);
    expect(r.removedChunks).toBe(3099);
    expect(store.has(keep)).toBe(true);
    expect(store.has(other.hashes.subarray(0, 32))).toBe(false);
  });
});
