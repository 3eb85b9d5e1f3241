import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HASH_BYTES, sha256 } from "../image/hash.ts";
import { ChunkStore } from "./chunk-store.ts";

let dir: string;
let store: ChunkStore;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "autopod-writer-"));
  store = ChunkStore.open(dir, { isDurable: false });
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function page(seed: number): Uint8Array {
  const b = new Uint8Array(4096);
  b.fill(seed & 0xff);
  new DataView(b.buffer).setUint32(0, seed);
  return b;
}

describe("ChunkWriter.putBatch", () => {
  test("asks the store once per batch: chunks stored already are not written again", () => {
    const old = [page(1), page(2)];
    store.putBatch(old.map((bytes) => ({ hash: sha256(bytes), bytes })));
    const before = store.stats();
    const w = store.writer("batch");
    const items = [...old, page(3), page(3)].map((bytes) => ({ hash: sha256(bytes), bytes }));
    w.putBatch(items);
    expect(w.newChunks).toBe(1);
    w.commit();
    w.close();
    const after = store.stats();
    expect(after.chunks).toBe(before.chunks + 1);
    expect(after.packBytes - before.packBytes).toBeLessThan(2 * 4096);
  });

  test("isExpectedNew skips the store's answer; a chunk stored after all is indexed once, counted once, and gc reclaims the copy", () => {
    const old = page(7);
    store.putBatch([{ hash: sha256(old), bytes: old }]);
    const w = store.writer("transfer");
    w.putBatch(
      [old, page(8)].map((bytes) => ({ hash: sha256(bytes), bytes })),
      { isExpectedNew: true },
    );
    w.commit();
    // Only the one that was really new counts.
    expect(w.newChunks).toBe(1);
    expect(w.newBytes).toBe(4096);
    w.close();
    expect(store.stats().chunks).toBe(2);
    expect(store.get(sha256(old))).toEqual(old);
    expect(store.get(sha256(page(8)))).toEqual(page(8));
    const gc = store.gc([sha256(old), sha256(page(8))], { compactBelow: 0.9 });
    expect(gc.packsRewritten + gc.packsDeleted).toBeGreaterThan(0);
    expect(store.get(sha256(old))).toEqual(old);
  });

  test("a batch with one chunk that does not match its claimed hash stores nothing, isExpectedNew or not", () => {
    for (const isExpectedNew of [false, true]) {
      const w = store.writer("bad");
      const good = page(20);
      const bad = page(21);
      expect(() =>
        w.putBatch(
          [
            { hash: sha256(good), bytes: good },
            { hash: sha256(page(22)), bytes: bad },
          ],
          { isExpectedNew },
        ),
      ).toThrow("does not match");
      expect(w.pendingCount).toBe(0);
      w.abort();
    }
  });

  test("isExpectedNew in a commit of many chunks: those stored already are found among the groups of rows and not counted", () => {
    const pages = Array.from({ length: 200 }, (_, i) => page(1000 + i));
    const before = [pages[5]!, pages[70]!, pages[199]!];
    store.putBatch(before.map((bytes) => ({ hash: sha256(bytes), bytes })));
    const w = store.writer("transfer");
    w.putBatch(
      pages.map((bytes) => ({ hash: sha256(bytes), bytes })),
      { isExpectedNew: true },
    );
    w.commit();
    expect(w.newChunks).toBe(197);
    expect(w.newBytes).toBe(197 * 4096);
    w.close();
    expect(store.stats().chunks).toBe(200);
    for (const p of pages) expect(store.get(sha256(p))).toEqual(p);
  });
});

describe("ChunkWriter.putInFile", () => {
  test("isExpectedNew skips the store's answer: a page stored already is written in place, indexed once and counted once", () => {
    const pages = [page(7), page(8), page(9)];
    store.putBatch([{ hash: sha256(pages[0]!), bytes: pages[0]! }]);
    const chunks = new Uint8Array(pages.length * HASH_BYTES);
    pages.forEach((p, i) => {
      chunks.set(sha256(p), i * HASH_BYTES);
    });
    const w = store.writer("transfer");
    const f = w.receiveFile(chunks, pages.length * 4096, 4096);
    // Arriving out of order, and the buffers they came in reused once flushReceived() has written them.
    const buffer = new Uint8Array(4096);
    for (const i of [2, 0, 1]) {
      buffer.set(pages[i]!);
      w.putInFile(f, { hash: chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), bytes: buffer }, [i], { isExpectedNew: true });
      w.flushReceived();
    }
    w.sealFile(f);
    w.commit();
    expect(w.newChunks).toBe(2);
    expect(w.newBytes).toBe(2 * 4096);
    w.close();
    expect(store.stats().chunks).toBe(3);
    for (const p of pages) expect(store.get(sha256(p))).toEqual(p);
    const raw = store.rawPackFor(chunks, pages.length * 4096);
    expect(raw).not.toBeNull();
    expect(new Uint8Array(fs.readFileSync(raw!))).toEqual(Buffer.concat(pages));
    expect(store.verifyAll().corrupt).toEqual([]);
  });
});
