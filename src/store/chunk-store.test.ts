import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkStore } from "./chunk-store.ts";
import { ChunkWorkers } from "./chunk-workers.ts";
import { ChunkMismatchError, CorruptChunkError, MissingChunkError } from "./errors.ts";
import { ZERO_HASH, ZERO_HEX, sha256, toHex } from "../image/hash.ts";

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

describe("ChunkStore", () => {
  test("hashes natively, matching @noble/hashes", () => {
    for (const n of [0, 1, 4096, 65536 + 3]) {
      const b = random(n);
      expect(toHex(sha256(b))).toBe(toHex(nobleSha256(b)));
    }
  });

  test("put, get and has round-trip; identical chunks are stored once", () => {
    const a = random(4096);
    const h1 = store.put(a);
    const h2 = store.put(a.slice());
    expect(toHex(h1)).toBe(toHex(h2));
    expect(store.has(h1)).toBe(true);
    expect(store.has(toHex(h1))).toBe(true);
    expect(store.get(toHex(h1))).toEqual(a);
    expect(store.stats().chunks).toBe(1);
    expect(store.stats().storedBytes).toBe(4096);
    expect(store.has(sha256(random(10)))).toBe(false);
  });

  test("get of an unknown chunk names it", () => {
    const h = toHex(sha256(random(10)));
    expect(() => store.get(h)).toThrow(MissingChunkError);
    expect(() => store.get(h)).toThrow(h);
  });

  test("missing() answers for 262,144 hashes in one query, hex or bytes", () => {
    const w = store.writer();
    const present: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) present.push(w.put(random(64)));
    w.commit();
    w.close();
    const asked: Uint8Array[] = [];
    for (let i = 0; i < 262_144; i++) {
      if (i % 262 === 0 && i / 262 < present.length) asked.push(present[i / 262]!);
      else asked.push(sha256(new Uint32Array([i]) as unknown as Uint8Array));
    }
    asked.push(ZERO_HASH);
    const t = performance.now();
    const lacking = store.missing(asked);
    const ms = performance.now() - t;
    expect(lacking.length).toBe(asked.length - 1000 - 1);
    expect(lacking.includes(present[0]!)).toBe(false);
    expect(ms).toBeLessThan(5000);
    const hex = asked.slice(0, 600).map(toHex);
    const lackingHex = store.missing(hex);
    expect(lackingHex.every((h) => typeof h === "string")).toBe(true);
    expect(lackingHex.length).toBe(600 - 3);
    expect(store.missing([ZERO_HEX])).toEqual([]);
  });

  test("putBatch verifies every chunk and rejects the whole batch naming the bad ones", () => {
    const good = random(4096);
    const bad = random(4096);
    const wrongHash = sha256(random(4096));
    const before = store.stats();
    let err: unknown;
    try {
      store.putBatch([
        { hash: sha256(good), bytes: good },
        { hash: wrongHash, bytes: bad },
      ]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ChunkMismatchError);
    expect((err as ChunkMismatchError).hashes).toEqual([toHex(wrongHash)]);
    expect((err as Error).message).toContain(toHex(wrongHash));
    expect(store.stats()).toEqual(before);
    const hs = store.putBatch([{ hash: toHex(sha256(good)), bytes: good }]);
    expect(store.get(hs[0]!)).toEqual(good);
  });

  test("a flipped bit in a pack is a CorruptChunkError naming the hash", () => {
    const a = random(4096);
    const h = store.put(a);
    store.put(random(4096));
    const pack = path.join(dir, "packs", packFiles(dir)[0]!);
    const bytes = fs.readFileSync(pack);
    bytes[16 + 36 + 100]! ^= 0x04;
    fs.writeFileSync(pack, bytes);
    expect(() => store.get(h)).toThrow(CorruptChunkError);
    expect(() => store.get(h)).toThrow(`Chunk ${toHex(h)} is corrupt`);
    expect(store.verifyAll().corrupt).toEqual([toHex(h)]);
  });

  test("a damaged index entry is caught: wrong offset is corrupt, wrong key is missing", () => {
    const a = random(4096);
    const b = random(4096);
    const ha = store.put(a);
    const hb = store.put(b);
    store.db.run("UPDATE chunks SET offset = offset + 1 WHERE hash = ?", [ha]);
    expect(() => store.get(ha)).toThrow(`Chunk ${toHex(ha)} is corrupt: the index and pack 1 disagree`);
    const flipped = hb.slice();
    flipped[5]! ^= 1;
    store.db.run("UPDATE chunks SET hash = ? WHERE hash = ?", [flipped, hb]);
    expect(() => store.get(hb)).toThrow(MissingChunkError);
    expect(() => store.get(flipped)).toThrow(CorruptChunkError);
  });

  test("a pack cut short is reported by the hashes it lost", () => {
    const a = store.put(random(4096));
    const b = store.put(random(4096));
    const pack = path.join(dir, "packs", packFiles(dir)[0]!);
    fs.truncateSync(pack, fs.statSync(pack).size - 10);
    expect(store.get(a).byteLength).toBe(4096);
    expect(() => store.get(b)).toThrow(`Chunk ${toHex(b)} is corrupt: pack 1 ends before the chunk`);
  });

  test("a writer's chunks are invisible until commit; abort leaves the store as it was", () => {
    store.put(random(100));
    const before = store.stats();
    const files = packFiles(dir);
    const w = store.writer("import");
    const h = w.put(random(4096));
    expect(w.get(h).byteLength).toBe(4096);
    expect(store.has(h)).toBe(false);
    w.abort();
    expect(store.stats()).toEqual(before);
    expect(packFiles(dir)).toEqual(files);
  });

  test("crash safety: an uncommitted or torn pack tail is never referenced and is cut on open", () => {
    const keep = random(4096);
    const hk = store.put(keep);
    const w = store.writer();
    const lost = w.put(random(8192));
    w.commit();
    const torn = w.put(random(4096));
    // Simulate a crash by copying the directory as it is, without closing.
    store.db.exec("PRAGMA wal_checkpoint(FULL)");
    const crashDir = fs.mkdtempSync(path.join(os.tmpdir(), "chunk-crash-"));
    try {
      fs.cpSync(dir, crashDir, { recursive: true });
      // And a torn record appended to the last committed pack.
      const last = path.join(crashDir, "packs", packFiles(crashDir).at(-1)!);
      fs.appendFileSync(last, random(1000));
      const sizeBefore = fs.statSync(last).size;
      const s2 = ChunkStore.open(crashDir);
      try {
        expect(s2.get(hk)).toEqual(keep);
        expect(s2.has(lost)).toBe(true);
        expect(s2.has(torn)).toBe(false);
        expect(fs.statSync(last).size).toBe(sizeBefore - 1000);
        expect(s2.verifyAll().corrupt).toEqual([]);
        expect(s2.stats().garbageBytes).toBe(0);
      } finally {
        s2.close();
      }
    } finally {
      fs.rmSync(crashDir, { recursive: true, force: true });
    }
    w.close();
  });

  test("a second process cannot open a store in use", () => {
    expect(() => ChunkStore.open(dir)).toThrow("in use by another process");
  });
});

describe("adopted page files (raw packs)", () => {
  /** A page file of distinct random pages, some zero pages, and a page repeated. */
  function pageFile(pages: number): { file: string; data: Uint8Array } {
    const data = random(pages * 4096);
    for (let p = 0; p < pages; p += 9) data.fill(0, p * 4096, (p + 1) * 4096);
    data.copyWithin(4 * 4096, 2 * 4096, 3 * 4096);
    const file = path.join(dir, `pages-${Math.random().toString(16).slice(2)}.img`);
    fs.writeFileSync(file, data);
    return { file, data };
  }

  test("a mostly new file is adopted whole: no bytes copied, every page readable and verified, zero pages not indexed", async () => {
    const { file, data } = pageFile(300);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("adopt");
    expect(w.putHashedFile(file, fh, { adopt: true }).adopted).toBe(true);
    // Before commit: readable through the writer, invisible to the store.
    const h5 = fh.hashes.subarray(5 * 32, 6 * 32);
    expect(Buffer.compare(w.get(h5), data.subarray(5 * 4096, 6 * 4096))).toBe(0);
    expect(store.has(h5)).toBe(false);
    w.commit();
    w.close();
    const distinct = 300 - Math.ceil(300 / 9) - 1; // zero pages and the repeat are not new
    expect(w.newChunks).toBe(distinct);
    expect(packFiles(dir).filter((f) => f.endsWith(".pages")).length).toBe(1);
    expect(packFiles(dir).filter((f) => f.endsWith(".pack")).length).toBe(0);
    for (let p = 0; p < 300; p++) {
      const h = fh.hashes.subarray(p * 32, (p + 1) * 32);
      if (fh.zero[p]) continue;
      expect(Buffer.compare(store.get(h), data.subarray(p * 4096, (p + 1) * 4096))).toBe(0);
    }
    // The original name can go (CRIU's directory is removed): the pack is its own link.
    fs.rmSync(file);
    expect(store.verifyAll()).toEqual({ checked: distinct, corrupt: [] });
    // Found whole by its chunk list, for a restore to link.
    expect(store.rawPackFor(fh.hashes, data.byteLength)).toMatch(/\.pages$/);
    expect(store.rawPackFor(fh.hashes, data.byteLength + 1)).toBeNull();
    // locate() gives data offsets with no header in a raw pack.
    const loc = store.locate(fh.hashes);
    expect(loc[0]).toBeNull(); // a zero page
    expect(loc[1]).toEqual({ pack: expect.any(Number), offset: 4096, length: 4096, headerBytes: 0 });
    expect(loc[4]!.offset).toBe(2 * 4096); // the repeat points at the first copy
  });

  test("a file mostly stored already (by another image) is not adopted: only its new pages are copied", async () => {
    const { file, data } = pageFile(200);
    const first = await pool.hashFile(file, 4096);
    let w = store.writer("first");
    w.putHashedFile(file, first, { adopt: true });
    w.commit();
    w.close();
    // 1% of pages change.
    const next = Uint8Array.from(data);
    next.set(random(4096), 17 * 4096);
    next.set(random(4096), 150 * 4096);
    const file2 = path.join(dir, "pages-next.img");
    fs.writeFileSync(file2, next);
    const second = await pool.hashFile(file2, 4096);
    w = store.writer("second");
    expect(w.putHashedFile(file2, second, { adopt: true }).adopted).toBe(false);
    w.commit();
    w.close();
    expect(w.newChunks).toBe(2);
    expect(w.newBytes).toBe(2 * 4096);
    expect(packFiles(dir).filter((f) => f.endsWith(".pages")).length).toBe(1);
    expect(Buffer.compare(store.get(second.hashes.subarray(150 * 32, 151 * 32)), next.subarray(150 * 4096, 151 * 4096))).toBe(0);
  });

  test("known pages (vouched by the previous image) are neither looked up nor stored", async () => {
    const { file } = pageFile(50);
    const fh = await pool.hashFile(file, 4096);
    let w = store.writer("first");
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    w = store.writer("second");
    const known = new Uint8Array(50).fill(1);
    w.trustStored(fh.hashes, known);
    expect(w.putHashedFile(file, fh, { known, adopt: true })).toEqual({ adopted: false, candidates: 0 });
    expect(w.missing([fh.hashes.subarray(32, 64)])).toEqual([]);
    w.commit();
    w.close();
    expect(w.newChunks).toBe(0);
  });

  test("a chunk list put whole is covered (the very array, not an equal copy)", async () => {
    const file = path.join(dir, "pages-c.img");
    fs.writeFileSync(file, random(64 * 4096));
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("cover");
    expect(w.covers(fh.hashes)).toBe(false);
    w.putHashedFile(file, fh, { adopt: true });
    expect(w.covers(fh.hashes)).toBe(true);
    expect(w.covers(fh.hashes.slice())).toBe(false);
    // Its chunks are the writer's at once (entries are made on the first lookup).
    expect(w.holds(fh.hashes, 5 * 32)).toBe(true);
    expect(w.pendingCount).toBe(64);
    w.close(); // not committed: discarded, adopted pack and all
    expect(packFiles(dir)).toEqual([]);
  });

  test("abort drops the adopted pack; a crash before commit leaves no pack on reopen", async () => {
    const { file } = pageFile(40);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("aborted");
    w.putHashedFile(file, fh, { adopt: true });
    expect(packFiles(dir).some((f) => f.endsWith(".pages"))).toBe(true);
    w.abort();
    expect(packFiles(dir)).toEqual([]);
    expect(fs.existsSync(file)).toBe(true); // the source is untouched
    // Adopted, then the process dies before commit.
    const w2 = store.writer("crashed");
    w2.putHashedFile(file, fh, { adopt: true });
    (store as unknown as { db: { close(): void } }).db.close();
    store = ChunkStore.open(dir);
    expect(packFiles(dir)).toEqual([]);
    expect(store.has(fh.hashes.subarray(32, 64))).toBe(false);
  });

  test("a flipped bit in an adopted pack is a CorruptChunkError naming the page's hash", async () => {
    const { file } = pageFile(30);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("adopt");
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    const pack = path.join(dir, "packs", packFiles(dir)[0]!);
    const b = fs.readFileSync(pack);
    b[7 * 4096 + 11]! ^= 4;
    fs.writeFileSync(pack, b);
    const h7 = fh.hashes.subarray(7 * 32, 8 * 32);
    expect(() => store.get(h7)).toThrow(CorruptChunkError);
    expect(store.verifyAll().corrupt).toEqual([toHex(h7)]);
  });

  test("gc drops an adopted pack no image needs, and compacts one that is mostly garbage into a plain pack", async () => {
    const { file, data } = pageFile(100);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("adopt");
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    const keep = [1, 2, 3].map((p) => fh.hashes.subarray(p * 32, (p + 1) * 32));
    const r = store.gc(keep);
    expect(r.packsRewritten).toBe(1);
    expect(packFiles(dir).every((f) => f.endsWith(".pack"))).toBe(true);
    for (const [k, h] of keep.entries()) expect(Buffer.compare(store.get(h), data.subarray((k + 1) * 4096, (k + 2) * 4096))).toBe(0);
    expect(store.rawPackFor(fh.hashes, data.byteLength)).toBeNull();
    store.gc([]);
    expect(packFiles(dir)).toEqual([]);
    expect(store.stats().garbageBytes).toBe(0);
  });
});

describe("readMany", () => {
  test("reads chunks in order in runs across plain and adopted packs, verifying each; names the bad one", async () => {
    const plain = [random(4096), random(100), random(65536)];
    const hs = plain.map((b) => store.put(b));
    const data = random(20 * 4096);
    const file = path.join(dir, "pages-r.img");
    fs.writeFileSync(file, data);
    const fh = await pool.hashFile(file, 4096);
    const w = store.writer("adopt");
    w.putHashedFile(file, fh, { adopt: true });
    w.commit();
    w.close();
    const order = [hs[0]!, fh.hashes.subarray(3 * 32, 4 * 32), fh.hashes.subarray(4 * 32, 5 * 32), hs[2]!, hs[1]!, fh.hashes.subarray(0, 32)];
    const all = new Uint8Array(order.length * 32);
    order.forEach((h, i) => {
      all.set(h, i * 32);
    });
    const got = [...store.readMany(all)];
    expect(got.map((b) => toHex(sha256(b)))).toEqual(order.map((h) => toHex(h)));
    expect(Buffer.compare(got[1]!, data.subarray(3 * 4096, 4 * 4096))).toBe(0);
    // Damage page 4 of the adopted pack.
    const pack = path.join(dir, "packs", packFiles(dir).find((f) => f.endsWith(".pages"))!);
    const b = fs.readFileSync(pack);
    b[4 * 4096 + 1]! ^= 1;
    fs.writeFileSync(pack, b);
    const err = (() => {
      try {
        for (const _ of store.readMany(all)) void _;
      } catch (e) {
        return e as CorruptChunkError & { index: number };
      }
    })();
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect(err!.hash).toBe(toHex(order[2]!));
    expect(err!.index).toBe(2);
    const missing = sha256(new Uint8Array([9, 9]));
    expect(() => [...store.readMany(missing)]).toThrow(MissingChunkError);
  });
});
