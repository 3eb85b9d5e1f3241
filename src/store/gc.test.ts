/** gc and compaction of the chunk store (gc.ts), through ChunkStore.gc. */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkStore } from "./chunk-store.ts";
import { ChunkWorkers } from "./chunk-workers.ts";
import { sha256, toHex } from "../image/hash.ts";

let dir: string;
let store: ChunkStore;
const pool = new ChunkWorkers(2);
afterAll(() => pool.close());

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

function packFiles(d: string): string[] {
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

describe("gc", () => {
  test("removes unreferenced chunks, keeps live ones, compacts packs", () => {
    const live: Uint8Array[] = [];
    const dead: Uint8Array[] = [];
    const w = store.writer();
    for (let i = 0; i < 200; i++) (i % 4 === 0 ? live : dead).push(w.put(random(4096)));
    w.commit();
    w.close();
    const before = store.stats();
    const r = store.gc(() => live);
    expect(r.removedChunks).toBe(150);
    expect(r.removedBytes).toBe(150 * 4096);
    expect(r.packsRewritten).toBe(1);
    const after = store.stats();
    expect(after.chunks).toBe(50);
    expect(after.packBytes).toBeLessThan(before.packBytes / 3);
    expect(after.garbageBytes).toBe(0);
    for (const h of live) expect(store.get(h).byteLength).toBe(4096);
    for (const h of dead) expect(store.has(h)).toBe(false);
    expect(store.verifyAll()).toEqual({ checked: 50, corrupt: [] });
    // Nothing live: every pack goes.
    store.gc([]);
    expect(store.stats().packs).toBe(0);
    expect(packFiles(dir)).toEqual([]);
  });

  test("is safe while a writer runs: pinned, found and uncommitted chunks all survive", async () => {
    const old = random(4096);
    const hOld = store.put(old); // stored, referenced by no image
    const w = store.writer("checkpoint");
    const fresh = w.put(random(4096)); // uncommitted
    expect(toHex(w.put(old))).toBe(toHex(hOld)); // dedup hit: pinned, not rewritten
    const committed = w.put(random(4096));
    const elsewhere = sha256(random(10));
    expect(w.missing([toHex(committed), toHex(elsewhere), toHex(hOld)])).toEqual([toHex(elsewhere)]);
    // Interleave gc with the writer's work.
    store.gc([]);
    await Promise.resolve();
    w.commit();
    store.gc([]);
    expect(store.get(hOld)).toEqual(old);
    expect(store.get(fresh).byteLength).toBe(4096);
    expect(store.get(committed).byteLength).toBe(4096);
    w.close();
    // Pins released: now they go.
    const r = store.gc([]);
    expect(r.removedChunks).toBe(3);
    expect(store.stats().chunks).toBe(0);
  });
});
