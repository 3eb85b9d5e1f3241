import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkStore, type StoreStats } from "../store/chunk-store.ts";
import { ChunkWorkers } from "../store/chunk-workers.ts";
import { sha256, toHex } from "../image/hash.ts";
import { ImageCatalogue } from "../store/image-catalogue.ts";
import { exportFrames, exportImage, exportSize, exportStream } from "./export.ts";
import { InvalidExportError, MissingParentError } from "./export-format.ts";
import { importImage } from "./import.ts";
import { InvalidManifestDeltaError } from "../image/manifest-delta.ts";
import { uniqueChunkRefs } from "../image/manifest.ts";
import { type FileEntry, InvalidManifestError, UnsupportedFormatError, chunkHash } from "../image/manifest.ts";
import { captureTree, materializeTree, materializeTreeAsync } from "./tree.ts";
import { randomBytes, sampleManifest } from "../image/testing.ts";
import { describeTree } from "./_test-util.ts";

let tmp: string;
let src: { store: ChunkStore; cat: ImageCatalogue };
let dst: { store: ChunkStore; cat: ImageCatalogue };

function open(name: string) {
  const store = ChunkStore.open(path.join(tmp, name), { isDurable: false });
  return { store, cat: new ImageCatalogue(store) };
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "export-"));
  src = open("src-store");
  dst = open("dst-store");
});
afterEach(() => {
  src.store.close();
  dst.store.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function makeImage(): Promise<{ id: string; dir: string; entries: FileEntry[] }> {
  const dir = path.join(tmp, "pod");
  fs.mkdirSync(path.join(dir, "etc"), { recursive: true });
  fs.writeFileSync(path.join(dir, "etc/hostname"), "web\n");
  fs.writeFileSync(path.join(dir, "big"), randomBytes(300_000));
  const pages = new Uint8Array(40 * 4096);
  pages.set(randomBytes(20 * 4096), 0);
  pages.set(pages.subarray(0, 4096), 30 * 4096); // a repeated page: sent once
  fs.writeFileSync(path.join(dir, "pages-1.img"), pages);
  fs.symlinkSync("etc/hostname", path.join(dir, "link"));
  const w = src.store.writer();
  const cap = await captureTree(dir, w);
  const id = src.cat.addManifest(sampleManifest({ rootfs: cap.entries }), w);
  w.close();
  return { id, dir, entries: cap.entries };
}

async function exportBytes(id: string): Promise<Uint8Array> {
  return new Uint8Array(await new Response(exportStream(src.cat, id)).arrayBuffer());
}

function snapshot(s: { store: ChunkStore; cat: ImageCatalogue }): { stats: StoreStats; images: number; packs: string[] } {
  return { stats: s.store.stats(), images: s.cat.list().length, packs: fs.readdirSync(path.join(s.store.dir, "packs")).sort() };
}

async function* pieces(bytes: Uint8Array, size = 1000): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, Math.min(bytes.byteLength, i + size));
}

/** Build an export by hand (for hostile content the exporter would never write). */
function handmade(manifest: unknown, chunks: Uint8Array[], version = 1): Uint8Array {
  const mbytes = new Packr({ useRecords: false, moreTypes: false }).pack(manifest);
  const parts: Uint8Array[] = [];
  const final = new Bun.CryptoHasher("sha256");
  const header = new Uint8Array(16);
  header.set(new TextEncoder().encode("APODIMG\0"));
  new DataView(header.buffer).setUint32(8, version);
  final.update(header);
  const mh = new Uint8Array(36);
  new DataView(mh.buffer).setUint32(0, mbytes.byteLength);
  mh.set(sha256(mbytes), 4);
  final.update(sha256(mbytes));
  parts.push(header, mh, mbytes);
  let total = 0;
  for (const c of chunks) {
    const fh = new Uint8Array(37);
    fh[0] = 0x43;
    fh.set(sha256(c), 1);
    new DataView(fh.buffer).setUint32(33, c.byteLength);
    final.update(fh.subarray(1));
    parts.push(fh, c);
    total += c.byteLength;
  }
  const t = new Uint8Array(49);
  t[0] = 0x54;
  new DataView(t.buffer).setBigUint64(1, BigInt(chunks.length));
  new DataView(t.buffer).setBigUint64(9, BigInt(total));
  final.update(t.subarray(1, 17));
  t.set(new Uint8Array(final.digest() as Uint8Array), 17);
  parts.push(t);
  return new Uint8Array(Buffer.concat(parts));
}

/** Two hashing threads, for imports that verify off the calling thread. */
const verifyThreads = new ChunkWorkers(2);
afterAll(() => verifyThreads.close());

describe("export and import", () => {
  test("a peer's transfer (chunks verified on hashing threads) imports an image whose files come back exactly", async () => {
    const { id, dir } = await makeImage();
    const bytes = await exportBytes(id);
    const imp = await importImage(dst.cat, pieces(bytes, 4093), { threads: verifyThreads, isExpectedNew: true, keepPartial: true });
    expect(imp).toMatchObject({ id, newChunks: 26, wasPresent: false });
    const restored = path.join(tmp, "restored-threads");
    materializeTree(dst.cat.manifest(id).rootfs, dst.store, restored);
    expect(describeTree(restored)).toEqual(describeTree(dir));
  });

  test("round trip through a file into another store, then restore to another directory", async () => {
    const { id, dir, entries } = await makeImage();
    const file = path.join(tmp, "image.apod");
    const out = fs.createWriteStream(file);
    const r = await exportImage(src.cat, id, out);
    await new Promise<void>((resolve) => out.end(resolve));
    expect(r.totalBytes).toBe(fs.statSync(file).size);
    expect(exportSize(src.cat, id, false)).toBe(r.totalBytes);
    expect(r.chunks).toBe(5 + 20 + 1); // 300,000 B in 64 KiB chunks, 20 distinct non-zero pages, the hostname
    const imp = await importImage(dst.cat, fs.createReadStream(file));
    expect(imp.id).toBe(id);
    expect(imp.newChunks).toBe(26);
    expect(dst.cat.list()[0]!.id).toBe(id);
    const out2 = path.join(tmp, "restored");
    materializeTree(dst.cat.manifest(id).rootfs, dst.store, out2);
    expect(describeTree(out2)).toEqual(describeTree(dir));
    expect(entries.length).toBe(6);
    // Again, from a web stream: nothing new is stored.
    const again = await importImage(dst.cat, Bun.file(file).stream());
    expect(again).toMatchObject({ id, newChunks: 0, newBytes: 0, wasPresent: true });
  });

  test("import skips chunks the store already has", async () => {
    const { id } = await makeImage();
    const bytes = await exportBytes(id);
    // The destination already holds the big file's chunks.
    const m = src.cat.manifest(id);
    const big = m.rootfs.find((e) => e.path === "big")!;
    dst.store.putBatch([0, 1, 2].map((i) => ({ hash: chunkHash(big, i), bytes: src.store.get(chunkHash(big, i)) })));
    const r = await importImage(dst.cat, pieces(bytes, 7777));
    expect(r.newChunks).toBe(26 - 3);
  });

  test("works from stdin ('-') in another process", async () => {
    const { id } = await makeImage();
    const file = path.join(tmp, "image.apod");
    fs.writeFileSync(file, await exportBytes(id));
    src.store.close();
    const script = path.join(tmp, "import.ts");
    fs.writeFileSync(
      script,
      `import { ChunkStore } from ${JSON.stringify(path.resolve(import.meta.dir, "../store/chunk-store.ts"))};
       import { ImageCatalogue } from ${JSON.stringify(path.resolve(import.meta.dir, "../store/image-catalogue.ts"))};
       import { importImage } from ${JSON.stringify(path.resolve(import.meta.dir, "import.ts"))};
       const store = ChunkStore.open(process.argv[2]);
       const r = await importImage(new ImageCatalogue(store), process.stdin);
       store.close();
       console.log(r.id);`,
    );
    const p = Bun.spawnSync([process.execPath, script, path.join(tmp, "third")], { stdin: Bun.file(file) });
    expect(p.stderr.toString()).toBe("");
    expect(p.stdout.toString().trim()).toBe(id);
    src = open("src-store");
  });

  test("truncation at any of a sample of offsets fails clearly and leaves the store as it was", async () => {
    const { id } = await makeImage();
    const bytes = await exportBytes(id);
    dst.store.put(randomBytes(100)); // a store that is not empty
    const before = snapshot(dst);
    const offsets = new Set([0, 1, 8, 15, 16, 17, 19, 20, 51, 52, 53, bytes.byteLength - 1, bytes.byteLength - 48, bytes.byteLength - 49]);
    for (let i = 0; i < 40; i++) offsets.add(Math.floor((bytes.byteLength * i) / 40));
    for (const off of [...offsets].filter((o) => o < bytes.byteLength)) {
      let err: unknown;
      try {
        await importImage(dst.cat, pieces(bytes.subarray(0, off), 4096));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidExportError);
      expect((err as Error).message).toMatch(/^Cannot import: the export is truncated \(it ends at byte \d+, inside .+\)$/);
      expect(snapshot(dst)).toEqual(before);
    }
  });

  test.each([
    ["on this thread", {}],
    ["verified on hashing threads, as a peer's transfer", { threads: verifyThreads, isExpectedNew: true, keepPartial: true }],
  ] as const)("one flipped bit in a chunk, the manifest, a frame or the trailer fails clearly (%s)", async (_, mode) => {
    const { id } = await makeImage();
    const bytes = await exportBytes(id);
    const before = snapshot(dst);
    const mlen = new DataView(bytes.buffer).getUint32(16);
    const firstFrame = 16 + 36 + mlen;
    const flip = async (at: number, bit = 0) => {
      const copy = bytes.slice();
      copy[at]! ^= 1 << bit;
      let err: unknown;
      try {
        await importImage(dst.cat, pieces(copy, 65536), mode);
      } catch (e) {
        err = e;
      }
      expect(snapshot(dst)).toEqual(before);
      return (err as Error).message;
    };
    const firstHash = toHex(bytes.subarray(firstFrame + 1, firstFrame + 33));
    expect(await flip(firstFrame + 37 + 100)).toMatch(
      new RegExp(`^Cannot import image ${id}: chunk ${firstHash} of file "rootfs/(big|pages-1.img)" is corrupt in the export$`),
    );
    expect(await flip(16 + 36 + 20)).toBe(`Cannot import: the manifest is corrupt (it does not match its hash ${id})`);
    expect(await flip(firstFrame + 5)).toContain("is not referenced by the manifest");
    expect(await flip(firstFrame + 34)).toContain("is framed as");
    expect(await flip(bytes.byteLength - 3)).toContain("the final hash does not match");
    expect(await flip(bytes.byteLength - 40)).toContain("the trailer counts");
    expect(await flip(3)).toContain("not an autopod image export");
  });

  test("bytes after the trailer are refused", async () => {
    const { id } = await makeImage();
    const bytes = await exportBytes(id);
    const longer = new Uint8Array(bytes.byteLength + 1);
    longer.set(bytes);
    await expect(importImage(dst.cat, pieces(longer))).rejects.toThrow("bytes after the trailer");
  });

  describe("hostile files are refused before anything is stored", () => {
    const data = randomBytes(4096);
    const entry = (over: Partial<FileEntry>): FileEntry => ({
      path: "f",
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtimeMs: 0,
      size: 4096,
      chunkSize: 4096,
      chunks: sha256(data),
      ...over,
    });
    const cases: Array<[string, Uint8Array, unknown, string]> = [
      [
        "dot-dot path",
        handmade(sampleManifest({ rootfs: [entry({ path: "../../etc/cron.d/x" })] }), [data]),
        InvalidManifestError,
        'unsafe path: it has a ".." component',
      ],
      ["absolute path", handmade(sampleManifest({ criu: [entry({ path: "/etc/passwd" })] }), [data]), InvalidManifestError, "it is absolute"],
      [
        "symlink out of the root",
        handmade(
          sampleManifest({ rootfs: [{ ...entry({}), type: "symlink", size: 0, chunkSize: 0, chunks: new Uint8Array(0), target: "../../../../root" }] }),
          [],
        ),
        InvalidManifestError,
        "points outside the root",
      ],
      [
        "write through a symlink",
        handmade(
          sampleManifest({
            rootfs: [
              { ...entry({ path: "x" }), type: "symlink", size: 0, chunkSize: 0, chunks: new Uint8Array(0), target: "/etc" },
              entry({ path: "x/passwd" }),
            ],
          }),
          [data],
        ),
        InvalidManifestError,
        'lies under "x"',
      ],
      ["absurd size", handmade(sampleManifest({ rootfs: [entry({ size: 2 ** 53 - 1 })] }), [data]), InvalidManifestError, "rootfs.0.size"],
      ["unknown manifest version", handmade({ ...sampleManifest(), format: 99 }, []), UnsupportedFormatError, "Unsupported manifest format version 99"],
      ["unknown export version", handmade(sampleManifest(), [], 7), UnsupportedFormatError, "Unsupported export format version 7"],
      ["a chunk the manifest does not name", handmade(sampleManifest(), [data]), InvalidExportError, "is not referenced by the manifest"],
      [
        "a chunk the manifest needs but nobody has",
        handmade(sampleManifest({ rootfs: [entry({})] }), []),
        InvalidExportError,
        "is neither in the export nor in the store",
      ],
    ];
    for (const [name, bytes, type, message] of cases) {
      test(name, async () => {
        const before = snapshot(dst);
        let err: unknown;
        try {
          await importImage(dst.cat, pieces(bytes));
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(type as new () => Error);
        expect((err as Error).message).toContain(message);
        expect(snapshot(dst)).toEqual(before);
      });
    }
    test("a huge declared manifest length is refused without reading it", async () => {
      const h = new Uint8Array(16 + 36);
      h.set(new TextEncoder().encode("APODIMG\0"));
      new DataView(h.buffer).setUint32(8, 1);
      new DataView(h.buffer).setUint32(16, 0xffff_fff0);
      await expect(importImage(dst.cat, pieces(h))).rejects.toThrow("over the limit");
    });
  });

  test("gc during an import keeps every chunk the import relies on", async () => {
    const { id } = await makeImage();
    const bytes = await exportBytes(id);
    // The destination has an older image sharing the big file; it is removed mid-import.
    const oldId = (await importImage(dst.cat, pieces(bytes))).id;
    const m = dst.cat.manifest(oldId);
    const r0 = dst.cat.list()[0]!;
    expect(r0.id).toBe(oldId);
    // Re-import a variant image (same chunks, another pod name) slowly, gc'ing between pieces.
    const variant = sampleManifest({ rootfs: m.rootfs, pod: { name: "other", command: [] } });
    const chunks = [...new Set(m.rootfs.flatMap((e) => Array.from({ length: e.chunks.byteLength / 32 }, (_, i) => toHex(chunkHash(e, i)))))]
      .filter((h) => h !== "0".repeat(64))
      .map((h) => dst.store.get(h));
    const vbytes = handmade(variant, chunks);
    let n = 0;
    async function* slow(): AsyncGenerator<Uint8Array> {
      for await (const p of pieces(vbytes, 20_000)) {
        if (n++ === 3) {
          dst.cat.remove(oldId);
          dst.cat.gc();
        } else dst.cat.gc();
        await Bun.sleep(0);
        yield p;
      }
    }
    const r = await importImage(dst.cat, slow());
    expect(dst.cat.list().map((i) => i.id)).toEqual([r.id]);
    dst.cat.gc();
    materializeTree(dst.cat.manifest(r.id).rootfs, dst.store, path.join(tmp, "ok"));
    expect(dst.store.verifyAll().corrupt).toEqual([]);
  });

  test("export refuses a corrupt chunk, naming hash and file", async () => {
    const { id } = await makeImage();
    const big = src.cat.manifest(id).rootfs.find((e) => e.path === "big")!;
    const h = chunkHash(big, 2);
    src.store.db.run("UPDATE chunks SET offset = offset + 36 + 65536 WHERE hash = ?", [h]);
    const frames = exportFrames(src.cat, id);
    await expect(
      (async () => {
        for await (const _ of frames);
      })(),
    ).rejects.toThrow(`Chunk ${toHex(h)} of file "rootfs/big" is corrupt`);
    expect(src.store.stats().writers).toBe(0);
  });
});

describe("signed exports", () => {
  test("carry the signature to import's admit step, which can refuse before any chunk is stored", async () => {
    const { Ed25519Signer } = await import("../trust/signer.ts");
    const { isValidImageSignature, signImage } = await import("../trust/image-signature.ts");
    const { signer } = await Ed25519Signer.generate();
    const { id } = await makeImage();
    const signature = await signImage(signer, id);
    const bytes = new Uint8Array(await new Response(exportStream(src.cat, id, { signature })).arrayBuffer());
    expect(bytes[15]).toBe(1); // flags: signed
    expect(exportSize(src.cat, id, true)).toBe(bytes.byteLength);
    const seen: Array<{ id: string; ok: boolean }> = [];
    const r = await importImage(dst.cat, pieces(bytes), {
      admit: async (got, sig) => {
        seen.push({ id: got, ok: sig !== null && (await isValidImageSignature(sig, got)) });
        return () => {};
      },
    });
    expect(r.id).toBe(id);
    expect(seen).toEqual([{ id, ok: true }]);

    const before = snapshot(dst);
    dst.cat.remove(id);
    const refusing = { admit: async () => Promise.reject(new Error("not trusted")) };
    await expect(importImage(dst.cat, pieces(bytes), refusing)).rejects.toThrow("not trusted");
    expect(dst.cat.has(id)).toBe(false);
    expect(snapshot(dst).packs).toEqual(before.packs);
  });

  test("an altered signature block fails the final hash; an unsigned export reaches admit with null", async () => {
    const { Ed25519Signer } = await import("../trust/signer.ts");
    const { signImage } = await import("../trust/image-signature.ts");
    const { signer } = await Ed25519Signer.generate();
    const { id } = await makeImage();
    const signed = new Uint8Array(await new Response(exportStream(src.cat, id, { signature: await signImage(signer, id) })).arrayBuffer());
    const mlen = new DataView(signed.buffer).getUint32(16);
    const copy = signed.slice();
    copy[52 + mlen + 40]! ^= 1; // inside the signature
    await expect(importImage(dst.cat, pieces(copy), { admit: async () => () => {} })).rejects.toThrow("the final hash does not match");
    let got: unknown = "unset";
    await importImage(dst.cat, pieces(await exportBytes(id)), {
      admit: async (_id, sig) => {
        got = sig;
        return () => {};
      },
    });
    expect(got).toBeNull();
  });
});

describe("exports for a peer: the manifest as a delta against the same pod's previous image, chunks by index", () => {
  /** Image A on src and dst; image B on src: A's pages with two changed. */
  async function twoImages(): Promise<{ a: string; b: string; bBytes: Uint8Array }> {
    const { id: a, dir } = await makeImage();
    await importImage(dst.cat, exportStream(src.cat, a));
    const pages = fs.readFileSync(path.join(dir, "pages-1.img"));
    pages.set(randomBytes(4096), 3 * 4096);
    pages.set(randomBytes(4096), 12 * 4096);
    fs.writeFileSync(path.join(dir, "pages-1.img"), pages);
    const w = src.store.writer();
    const cap = await captureTree(dir, w);
    const b = src.cat.addManifest(sampleManifest({ rootfs: cap.entries, parent: a }), w);
    w.close();
    return { a, b, bBytes: src.cat.manifestBytes(b) };
  }

  /** What dst lacks of image `id` on src: the selection a push sends. */
  function lackingOf(id: string): Uint8Array {
    const refs = uniqueChunkRefs(src.cat.manifest(id));
    const lacking = new Set(dst.store.missing(refs.map((r) => r.hash)));
    const only = new Uint8Array(Math.ceil(refs.length / 8));
    refs.forEach((r, i) => {
      if (lacking.has(r.hash)) only[i >> 3]! |= 1 << (i & 7);
    });
    return only;
  }

  async function peerExport(id: string, parent: string): Promise<Uint8Array> {
    const options = { only: lackingOf(id), manifestParent: { id: parent, manifestBytes: src.cat.manifestBytes(parent) }, chunkIndexes: true };
    return new Uint8Array(await new Response(exportStream(src.cat, id, options)).arrayBuffer());
  }

  const parentOf = (id: string) => (dst.cat.has(id) ? dst.cat.manifestBytes(id) : null);

  test("rebuild the exact manifest, store the image, and cost little more than the changed pages", async () => {
    const { a, b, bBytes } = await twoImages();
    const bytes = await peerExport(b, a);
    const whole = new Uint8Array(await new Response(exportStream(src.cat, b, { only: lackingOf(b) })).arrayBuffer());
    const r = await importImage(dst.cat, pieces(bytes, 3000), { parentManifest: parentOf });
    expect(r).toMatchObject({ id: b, newChunks: 2, wasPresent: false });
    expect(dst.cat.manifestBytes(b)).toEqual(bBytes);
    // Two pages of 4 KiB, 5 bytes of frame each, and a delta of two hashes: against a whole manifest and 37-byte frames.
    expect(bytes.byteLength).toBeLessThan(2 * 4096 + 400);
    expect(whole.byteLength - bytes.byteLength).toBeGreaterThan(bBytes.byteLength - 200);
    const out = path.join(tmp, "restored");
    materializeTree(dst.cat.manifest(b).rootfs, dst.store, out);
    expect(fs.readFileSync(path.join(out, "pages-1.img"))).toEqual(fs.readFileSync(path.join(tmp, "pod", "pages-1.img")));
  });

  test("hostile or impossible deltas are refused with the store unchanged", async () => {
    const { a, b } = await twoImages();
    const good = await peerExport(b, a);
    const dv = new DataView(good.buffer, good.byteOffset);
    const dlen = dv.getUint32(16);
    const at = 16 + 4 + 64; // the delta's first byte
    /** The export with its delta replaced (the final hash covers the image and parent ids, not the delta's bytes). */
    const withDelta = (delta: Uint8Array) => {
      const out = new Uint8Array(good.byteLength - dlen + delta.byteLength);
      out.set(good.subarray(0, at));
      new DataView(out.buffer).setUint32(16, delta.byteLength);
      out.set(delta, at);
      out.set(good.subarray(at + dlen), at + delta.byteLength);
      return out;
    };
    const real = good.slice(at, at + dlen);
    const length = new DataView(real.buffer).getUint32(0);
    const u32 = (n: number) => {
      const x = new Uint8Array(4);
      new DataView(x.buffer).setUint32(0, n);
      return x;
    };
    const cat = (...p: number[][]) => Uint8Array.from(p.flat());
    const parentLength = dst.cat.manifestBytes(a).byteLength;
    const cases: Array<[string, Uint8Array, ImportOptionsLike, RegExp]> = [
      ["a parent this host does not have", good, { parentManifest: () => null }, /is a delta against image [0-9a-f]{64}, which this host does not have/],
      ["no way to find parents at all", good, {}, /which this host does not have/],
      [
        "a copy beyond the parent's end",
        withDelta(cat([...u32(length)], [0x01, ...varint(parentLength - 10), 20])),
        { parentManifest: parentOf },
        /a copy of bytes \d+ to \d+ of a parent of \d+/,
      ],
      ["an absurd rebuilt length", withDelta(cat([...u32(0xffff_fff0)], [0x01, 0, 1])), { parentManifest: parentOf }, /over the manifest limit/],
      ["an op past the declared length", withDelta(cat([...u32(10)], [0x01, 0, 11])), { parentManifest: parentOf }, /a copy of 11 bytes at byte 0 of 10/],
      ["trailing bytes after the last op", withDelta(cat([...real], [0x02, 1, 0])), { parentManifest: parentOf }, /3 bytes follow the last op/],
      [
        "a well-formed delta that rebuilds another manifest",
        withDelta(cat([...u32(parentLength)], [0x01, 0, ...varint(parentLength)])),
        { parentManifest: parentOf },
        /the manifest rebuilt from its delta against image [0-9a-f]{64} does not match its hash/,
      ],
      [
        "an absurd delta length",
        withDelta(new Uint8Array(0)).map((x, i) => (i >= 16 && i < 20 ? 0xff : x)),
        { parentManifest: parentOf },
        /the manifest delta is 4294967295 bytes, over the limit/,
      ],
    ];
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    for (const [name, bytes, opts, message] of cases) {
      let err: unknown;
      try {
        await importImage(dst.cat, pieces(bytes, 1000), opts);
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(Error);
      expect((err as Error).message, name).toMatch(message);
      expect(snapshot(dst), name).toEqual(before);
    }
    // The classes callers tell apart: a parent it lacks (the pusher then sends the whole manifest), a bad delta.
    const missing = await importImage(dst.cat, pieces(good), {}).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(MissingParentError);
    const hostile = await importImage(dst.cat, pieces(withDelta(cat([...u32(10)], [0x01, 0, 11]))), { parentManifest: parentOf }).catch((e: unknown) => e);
    expect(hostile).toBeInstanceOf(InvalidManifestDeltaError);
    // The control: the real one goes in.
    expect((await importImage(dst.cat, pieces(good), { parentManifest: parentOf })).id).toBe(b);
  });

  test("a chunk index out of range, a hash frame in an indexed export, and truncation anywhere are refused with the store unchanged", async () => {
    const { a, b } = await twoImages();
    const good = await peerExport(b, a);
    const dlen = new DataView(good.buffer, good.byteOffset).getUint32(16);
    const firstFrame = 16 + 4 + 64 + dlen;
    expect(good[firstFrame]).toBe(0x63);
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    const outOfRange = good.slice();
    new DataView(outOfRange.buffer).setUint32(firstFrame + 1, 1_000_000);
    const hashFrame = good.slice();
    hashFrame[firstFrame] = 0x43;
    for (const [bytes, message] of [
      [outOfRange, /chunk index 1000000 is out of range \(the manifest has \d+ chunks\)/],
      [hashFrame, /unknown frame type 67/],
    ] as const) {
      const err = await importImage(dst.cat, pieces(bytes), { parentManifest: parentOf }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidExportError);
      expect((err as Error).message).toMatch(message);
      expect(snapshot(dst)).toEqual(before);
    }
    for (let i = 0; i < 30; i++) {
      const off = Math.floor((good.byteLength * i) / 30);
      const err = await importImage(dst.cat, pieces(good.subarray(0, off), 512), { parentManifest: parentOf }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidExportError);
      expect((err as Error).message).toMatch(/truncated/);
      expect(snapshot(dst)).toEqual(before);
    }
  });
});

type ImportOptionsLike = Parameters<typeof importImage>[2];

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

describe("page images received in place: a restore of an imported image links them as it does a local one's", () => {
  /** An image on src whose CRIU files are a 6 MiB page image (a third of it zero pages, two pages repeated) and a small file. */
  async function pageImage(): Promise<{ id: string; pages: Uint8Array<ArrayBuffer> }> {
    const dir = path.join(tmp, "criu");
    fs.mkdirSync(dir);
    const n = 1536;
    const pages = new Uint8Array(n * 4096);
    pages.set(randomBytes(1024 * 4096));
    pages.set(pages.subarray(0, 4096), 1100 * 4096);
    pages.set(pages.subarray(4096, 8192), 1535 * 4096);
    fs.writeFileSync(path.join(dir, "pages-1.img"), pages);
    fs.writeFileSync(path.join(dir, "core-1.img"), randomBytes(1800));
    const w = src.store.writer();
    const cap = await captureTree(dir, w);
    // CRIU's files are root's, 0644, whoever runs this test.
    const criu = cap.entries.map((e) => (e.type === "file" ? { ...e, uid: 0, gid: 0, mode: 0o644 } : e));
    const id = src.cat.addManifest(sampleManifest({ criu }), w);
    w.close();
    return { id, pages };
  }

  const pagesEntry = (cat: ImageCatalogue, id: string) => cat.manifest(id).criu.find((e) => e.path === "pages-1.img")!;

  test("an imported page image is one raw pack, linked whole at restore, every page checked", async () => {
    const { id, pages } = await pageImage();
    const r = await importImage(dst.cat, pieces(await exportBytes(id), 100_000));
    expect(r.newChunks).toBe(1024 + 1);
    const e = pagesEntry(dst.cat, id);
    const raw = dst.store.rawPackFor(e.chunks, e.size);
    expect(raw).not.toBeNull();
    expect(new Uint8Array(fs.readFileSync(raw!))).toEqual(pages);
    const out = path.join(tmp, "restored");
    const made = await materializeTreeAsync(dst.cat.manifest(id).criu, dst.store, out, { shouldPreserveOwner: false, deferLinkedChecks: true });
    await made.verified;
    expect(fs.statSync(path.join(out, "pages-1.img")).ino).toBe(fs.statSync(raw!).ino);
    expect(new Uint8Array(fs.readFileSync(path.join(out, "pages-1.img")))).toEqual(pages);
    expect(dst.store.verifyAll().corrupt).toEqual([]);
    // gc keeps it whole (the image references it).
    dst.cat.gc();
    expect(dst.store.rawPackFor(e.chunks, e.size)).toBe(raw);
  });

  test("pages the receiver had already are filled in from its store; a page image mostly known is not received in place", async () => {
    const { id, pages } = await pageImage();
    const e = pagesEntry(src.cat, id);
    // The receiver holds 150 of the 1024 distinct pages: the rest travel, those 150 are copied in from its store.
    dst.store.putBatch(Array.from({ length: 150 }, (_, i) => ({ hash: chunkHash(e, i * 5 + 2), bytes: src.store.get(chunkHash(e, i * 5 + 2)) })));
    const only = lackingBitmap(id);
    await importImage(dst.cat, exportStream(src.cat, id, { only, chunkIndexes: true }));
    const raw = dst.store.rawPackFor(e.chunks, e.size);
    expect(raw).not.toBeNull();
    expect(new Uint8Array(fs.readFileSync(raw!))).toEqual(pages);
    // Another store that holds 900 of them: those pages stay in ordinary packs (a restore copies, as for a local image mostly unchanged).
    const third = open("third-store");
    try {
      third.store.putBatch(Array.from({ length: 900 }, (_, i) => ({ hash: chunkHash(e, i), bytes: src.store.get(chunkHash(e, i)) })));
      await importImage(third.cat, exportStream(src.cat, id));
      expect(third.store.rawPackFor(e.chunks, e.size)).toBeNull();
      const out = path.join(tmp, "third-restored");
      await (await materializeTreeAsync(third.cat.manifest(id).criu, third.store, out, { shouldPreserveOwner: false })).verified;
      expect(new Uint8Array(fs.readFileSync(path.join(out, "pages-1.img")))).toEqual(pages);
    } finally {
      third.store.close();
    }
  });

  test("a cut import keeps the pages that arrived (the retry sends only the rest); a corrupt page leaves the store as it was", async () => {
    const { id, pages } = await pageImage();
    const bytes = await exportBytes(id);
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    // A page whose bytes do not match its hash: refused, nothing kept, no pack left behind.
    const bad = bytes.slice();
    bad[bytes.byteLength - 49 - 3000]! ^= 1;
    const err = await importImage(dst.cat, pieces(bad, 100_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidExportError);
    expect(snapshot(dst)).toEqual(before);
    // Cut after about half, keeping what arrived (as from a peer): the next import is told only the rest is missing.
    // (Commits come at the end of a batch of up to 1 MiB: the first batch is committed, the second is cut.)
    const cutAt = Math.floor(bytes.byteLength / 2);
    const cut = await importImage(dst.cat, pieces(bytes.subarray(0, cutAt), 100_000), { keepPartial: true, commitEveryBytes: 512 << 10 }).catch(
      (e: unknown) => e,
    );
    expect(cut).toBeInstanceOf(InvalidExportError);
    expect(dst.cat.has(id)).toBe(false);
    const only = lackingBitmap(id);
    const kept = uniqueChunkRefs(src.cat.manifest(id)).length - countBits(only);
    expect(kept).toBeGreaterThan(200);
    await importImage(dst.cat, exportStream(src.cat, id, { only, chunkIndexes: true }), { keepPartial: true });
    const e = pagesEntry(dst.cat, id);
    const raw = dst.store.rawPackFor(e.chunks, e.size);
    expect(raw).not.toBeNull();
    expect(new Uint8Array(fs.readFileSync(raw!))).toEqual(pages);
    // The first, partial pack is garbage once gc runs; what is left reads back whole.
    dst.cat.gc();
    expect(dst.store.verifyAll().corrupt).toEqual([]);
    const out = path.join(tmp, "restored");
    await (await materializeTreeAsync(dst.cat.manifest(id).criu, dst.store, out, { shouldPreserveOwner: false })).verified;
    expect(new Uint8Array(fs.readFileSync(path.join(out, "pages-1.img")))).toEqual(pages);
  });

  test("as a peer sends it (chunks by index, verified on hashing threads): received in place, and a corrupt page is refused before it is written", async () => {
    const { id, pages } = await pageImage();
    const peer = { threads: verifyThreads, isExpectedNew: true, keepPartial: true } as const;
    const indexed = new Uint8Array(await new Response(exportStream(src.cat, id, { chunkIndexes: true })).arrayBuffer());
    // The first frame of a page: "c", u32 index, the page's bytes.
    const refs = uniqueChunkRefs(src.cat.manifest(id));
    const mlen = new DataView(indexed.buffer).getUint32(16);
    let at = 16 + 36 + mlen;
    let page = -1;
    while (page < 0) {
      const i = new DataView(indexed.buffer).getUint32(at + 1);
      if (refs[i]!.path === "pages-1.img") page = i;
      else at += 5 + refs[i]!.length;
    }
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    const bad = indexed.slice();
    bad[at + 5 + 1000]! ^= 1;
    const err = await importImage(dst.cat, pieces(bad, 100_000), peer).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidExportError);
    expect((err as Error).message).toBe(
      `Cannot import image ${id}: chunk ${toHex(refs[page]!.hash)} of file "${refs[page]!.tree}/pages-1.img" is corrupt in the export`,
    );
    expect(snapshot(dst)).toEqual(before);
    const r = await importImage(dst.cat, pieces(indexed, 100_000), peer);
    expect(r.newChunks).toBe(1024 + 1);
    const e = pagesEntry(dst.cat, id);
    const raw = dst.store.rawPackFor(e.chunks, e.size);
    expect(raw).not.toBeNull();
    expect(new Uint8Array(fs.readFileSync(raw!))).toEqual(pages);
    expect(dst.store.verifyAll().corrupt).toEqual([]);
  });

  test("an export for a peer does not hash what it reads, the peer does: a page corrupt on the sender's disk is refused there, its store unchanged", async () => {
    const { id } = await pageImage();
    const refs = uniqueChunkRefs(src.cat.manifest(id));
    const page = refs.findIndex((r) => r.path === "pages-1.img");
    const [at] = src.store.locate(refs[page]!.hash);
    const fd = fs.openSync(src.store.packFile(at!.pack), "r+");
    fs.writeSync(fd, new Uint8Array([0xa5]), 0, 1, at!.offset + at!.headerBytes + 100);
    fs.closeSync(fd);
    // A file export still checks every chunk as it reads it.
    await expect(new Response(exportStream(src.cat, id, { chunkIndexes: true })).arrayBuffer()).rejects.toThrow(
      `Chunk ${toHex(refs[page]!.hash)} of file "${refs[page]!.tree}/pages-1.img" is corrupt`,
    );
    const forPeer = new Uint8Array(await new Response(exportStream(src.cat, id, { chunkIndexes: true, isVerifiedByReceiver: true })).arrayBuffer());
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    const err = await importImage(dst.cat, pieces(forPeer, 65_536), { threads: verifyThreads, isExpectedNew: true, keepPartial: true }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidExportError);
    expect((err as Error).message).toBe(
      `Cannot import image ${id}: chunk ${toHex(refs[page]!.hash)} of file "${refs[page]!.tree}/pages-1.img" is corrupt in the export`,
    );
    expect(snapshot(dst)).toEqual(before);
    expect(dst.store.verifyAll().corrupt).toEqual([]);
  });

  function lackingBitmap(id: string): Uint8Array {
    const refs = uniqueChunkRefs(src.cat.manifest(id));
    const lacking = new Set(dst.store.missing(refs.map((r) => r.hash)));
    const only = new Uint8Array(Math.ceil(refs.length / 8));
    refs.forEach((r, i) => {
      if (lacking.has(r.hash)) only[i >> 3]! |= 1 << (i & 7);
    });
    return only;
  }

  function countBits(b: Uint8Array): number {
    let n = 0;
    for (const x of b) for (let k = 0; k < 8; k++) n += (x >> k) & 1;
    return n;
  }
});
