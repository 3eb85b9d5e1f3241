import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type FileEntry, PAGE_SIZE, encodeManifest } from "../image/manifest.ts";
import { HASH_BYTES, ZERO_HASH, isAllZero, sha256 } from "../image/hash.ts";
import { randomBytes, sampleManifest } from "../image/testing.ts";
import { ChunkStore, type ChunkWriter } from "./chunk-store.ts";
import { MissingChunkError } from "./errors.ts";
import { CorruptManifestError, ImageCatalogue } from "./image-catalogue.ts";

let tmp: string;
let store: ChunkStore;
let cat: ImageCatalogue;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "catalogue-"));
  store = ChunkStore.open(path.join(tmp, "store"), { isDurable: false });
  cat = new ImageCatalogue(store);
});
afterEach(() => {
  store.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function checkpoint(dir: string, pod: string, parent: string | null = null): Promise<string> {
  const w = store.writer(`checkpoint ${pod}`);
  try {
    return cat.addManifest(sampleManifest({ pod: { name: pod, command: ["sh"] }, rootfs: captureFlat(dir, w), parent }), w);
  } finally {
    w.close();
  }
}

/**
 * The entries of a flat directory of files, their chunks put through `w` (as
 * checkpoint/tree.ts's captureTree would, which the store must not import).
 */
function captureFlat(dir: string, w: ChunkWriter): FileEntry[] {
  const st = fs.statSync(dir);
  const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, chunkSize: 0, chunks: new Uint8Array(0) };
  const entries: FileEntry[] = [{ ...base, path: ".", type: "dir", size: 0 }];
  for (const name of fs.readdirSync(dir).sort()) {
    const bytes = new Uint8Array(fs.readFileSync(path.join(dir, name)));
    const chunkSize = /^pages-\d+\.img$/.test(name) ? PAGE_SIZE : 64 << 10;
    const chunks = new Uint8Array(Math.ceil(bytes.byteLength / chunkSize) * HASH_BYTES);
    for (let i = 0; i * chunkSize < bytes.byteLength; i++) {
      const chunk = bytes.subarray(i * chunkSize, (i + 1) * chunkSize);
      chunks.set(isAllZero(chunk) ? ZERO_HASH : w.put(chunk), i * HASH_BYTES);
    }
    entries.push({ ...base, path: name, type: "file", mode: 0o644, size: bytes.byteLength, chunkSize, chunks });
  }
  return entries;
}

describe("ImageCatalogue", () => {
  test("two pods of one base store the base once; list shows logical and unique bytes", async () => {
    const base = path.join(tmp, "base");
    fs.mkdirSync(base);
    fs.writeFileSync(path.join(base, "lib.so"), randomBytes(256 << 10));
    fs.writeFileSync(path.join(base, "pages-1.img"), new Uint8Array(64 << 10));
    const a = path.join(tmp, "a");
    const b = path.join(tmp, "b");
    fs.cpSync(base, a, { recursive: true });
    fs.cpSync(base, b, { recursive: true });
    fs.writeFileSync(path.join(a, "own"), randomBytes(10_000));
    fs.writeFileSync(path.join(b, "own"), randomBytes(20_000));
    const ia = await checkpoint(a, "a");
    const ib = await checkpoint(b, "b", ia);
    expect(store.stats().storedBytes).toBe((256 << 10) + 10_000 + 20_000);
    const list = cat.list();
    expect(list.map((i) => i.pod)).toEqual(["a", "b"]);
    const [la, lb] = list;
    expect(la!.id).toBe(ia);
    expect(la!.logicalBytes).toBe((256 << 10) + (64 << 10) + 10_000);
    expect(la!.uniqueBytes).toBe(10_000);
    expect(lb!.uniqueBytes).toBe(20_000);
    expect(lb!.referencedBytes).toBe((256 << 10) + 20_000);
    expect(lb!.parent).toBe(ia);
    expect(cat.stats()).toMatchObject({ images: 2, logicalBytes: la!.logicalBytes + lb!.logicalBytes, storedBytes: (256 << 10) + 30_000 });
    expect(cat.manifest(ia).pod.name).toBe("a");

    cat.remove(ia);
    expect(cat.has(ia)).toBe(false);
    expect(cat.info(ib).uniqueBytes).toBe((256 << 10) + 20_000);
    const r = cat.gc();
    expect(r.removedBytes).toBe(10_000);
    expect(store.stats().storedBytes).toBe((256 << 10) + 20_000);
    cat.remove(ib);
    cat.gc();
    expect(store.stats()).toMatchObject({ chunks: 0, packs: 0 });
  });

  test("an image whose chunks are not all stored is refused, naming one", () => {
    const h = sha256(randomBytes(16));
    const entries = [{ path: "f", type: "file" as const, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 10, chunkSize: 4096, chunks: h }];
    expect(() => cat.addManifest(sampleManifest({ rootfs: entries }))).toThrow(MissingChunkError);
    expect(() => cat.addManifest(sampleManifest({ rootfs: entries }))).toThrow('(needed by file "rootfs/f")');
    expect(cat.list()).toEqual([]);
  });

  test("a flipped bit in a stored manifest is caught by its id", async () => {
    const d = path.join(tmp, "d");
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, "f"), "hello");
    const id = await checkpoint(d, "p");
    const bytes = cat.manifestBytes(id).slice();
    bytes[bytes.byteLength - 3]! ^= 0x10;
    const before = cat.manifest(id);
    store.db.run("UPDATE images SET manifest = ? WHERE id = ?", [bytes, id]);
    // The catalogue that added it keeps the manifest it checked then (a restore right after a checkpoint reads none back)...
    expect(cat.manifest(id)).toBe(before);
    expect(() => cat.manifestBytes(id)).toThrow(CorruptManifestError);
    // ...and every other reads the row, and checks it.
    const fresh = new ImageCatalogue(store);
    expect(() => fresh.manifest(id)).toThrow(CorruptManifestError);
    expect(() => fresh.manifest(id)).toThrow(`The manifest of image ${id} is corrupt`);
  });

  test("the manifests kept decoded go with their image, and a kept one is what was read", async () => {
    const d = path.join(tmp, "d");
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, "f"), "hello");
    const id = await checkpoint(d, "p");
    const fresh = new ImageCatalogue(store);
    const read = fresh.manifest(id);
    expect(fresh.manifest(id)).toBe(read);
    expect(read).toEqual(cat.manifest(id));
    cat.remove(id);
    expect(() => cat.manifest(id)).toThrow(`Image "${id}" is not in the catalogue`);
    expect(() => fresh.manifest(id)).toThrow(`Image "${id}" is not in the catalogue`);
  });

  test("ids by prefix and a pod's latest image, without reading manifests", () => {
    const a = cat.addManifest(sampleManifest({ pod: { name: "p", command: ["sh"] }, createdAt: "2026-01-01T00:00:00.000Z" }));
    const b = cat.addManifest(sampleManifest({ pod: { name: "p", command: ["sh"] }, createdAt: "2026-01-02T00:00:00.000Z" }));
    const c = cat.addManifest(sampleManifest({ pod: { name: "q", command: ["sh"] }, createdAt: "2026-01-03T00:00:00.000Z" }));
    expect(cat.idsStartingWith(a.slice(0, 8))).toEqual([a]);
    expect(cat.idsStartingWith(a)).toEqual([a]);
    expect(cat.idsStartingWith("").sort()).toEqual([a, b, c].sort());
    expect(cat.idsStartingWith("zz")).toEqual([]);
    expect(cat.latestOf("p")).toBe(b);
    expect(cat.latestOf("q")).toBe(c);
    expect(cat.latestOf("nosuch")).toBeNull();
  });

  test("adding the same manifest twice gives the same id and one row", () => {
    const bytes = encodeManifest(sampleManifest());
    expect(cat.add(bytes)).toBe(cat.add(bytes));
    expect(cat.list().length).toBe(1);
  });

  test("gcYielding lets the event loop turn between images, and keeps the chunks of an image committed meanwhile", async () => {
    const dirs = ["p1", "p2", "p3"].map((n) => {
      const d = path.join(tmp, n);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, "own"), randomBytes(50_000));
      return d;
    });
    const first = await checkpoint(dirs[0]!, "p1");
    const gone = await checkpoint(dirs[1]!, "p2");
    cat.remove(gone);
    let yields = 0;
    let late = "";
    const r = await cat.gcYielding(async () => {
      yields++;
      if (yields === 1) late = await checkpoint(dirs[2]!, "p3"); // commits while gc waits
    });
    expect(yields).toBe(1); // one image was there when gc began
    expect(r.removedChunks).toBeGreaterThan(0); // the removed image's
    expect(r.removedBytes).toBe(50_000);
    for (const id of [first, late]) {
      const m = cat.manifest(id);
      const own = m.rootfs.find((e) => e.path === "own")!;
      expect(store.missing([own.chunks.subarray(0, 32)])).toEqual([]);
    }
  });

  test("gc during a checkpoint keeps the writer's chunks until its image is recorded", async () => {
    const d = path.join(tmp, "d");
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, "f"), randomBytes(100_000));
    const w = store.writer("checkpoint");
    const entries = captureFlat(d, w);
    w.commit(); // committed, but no image refers to them yet
    expect(cat.gc().removedChunks).toBe(0);
    const id = cat.addManifest(sampleManifest({ rootfs: entries }), w);
    w.close();
    expect(cat.gc().removedChunks).toBe(0);
    expect(cat.info(id).uniqueBytes).toBe(100_000);
  });
});
