import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkStore } from "../store/chunk-store.ts";
import { ChunkWorkers } from "../store/chunk-workers.ts";
import { CorruptChunkError } from "../store/errors.ts";
import { toHex } from "../image/hash.ts";
import { type FileEntry, InvalidManifestError, chunkCount, chunkHash } from "../image/manifest.ts";
import { captureTree, materializeTree, materializeTreeAsync, materializeTreeYielding, startRawPackChecks, YIELD_EVERY_MS } from "./tree.ts";
import { randomBytes } from "../image/testing.ts";
import { describeTree } from "./_test-util.ts";

let tmp: string;
let store: ChunkStore;
const isRoot = process.getuid?.() === 0;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tree-"));
  store = ChunkStore.open(path.join(tmp, "store"), { isDurable: false });
});
afterEach(() => {
  store.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function makeTree(root: string): void {
  fs.mkdirSync(path.join(root, "etc/deep/er"), { recursive: true });
  fs.mkdirSync(path.join(root, "ro"));
  fs.writeFileSync(path.join(root, "empty"), "");
  fs.writeFileSync(path.join(root, "etc/hostname"), "web\n");
  fs.writeFileSync(path.join(root, "etc/deep/er/big.bin"), randomBytes(200_000));
  const pages = new Uint8Array(64 * 4096);
  pages.set(randomBytes(4096 * 10), 4096 * 5); // pages 5..14 random, the rest zero
  fs.writeFileSync(path.join(root, "pages-1.img"), pages);
  fs.writeFileSync(path.join(root, "ro/inside"), "x");
  fs.chmodSync(path.join(root, "ro"), 0o555);
  fs.writeFileSync(path.join(root, "suid"), "#!/bin/sh\n");
  fs.chmodSync(path.join(root, "suid"), 0o4755);
  fs.symlinkSync("etc/hostname", path.join(root, "rel-link"));
  fs.symlinkSync("/etc/hostname", path.join(root, "abs-link"));
  fs.symlinkSync("nowhere", path.join(root, "dangling"));
  fs.linkSync(path.join(root, "etc/hostname"), path.join(root, "hard"));
  if (isRoot) {
    fs.chownSync(path.join(root, "etc/hostname"), 1234, 5678);
    fs.lchownSync(path.join(root, "rel-link"), 42, 43);
    fs.chownSync(path.join(root, "ro"), 7, 8);
  }
  fs.utimesSync(path.join(root, "etc/deep/er/big.bin"), 1_600_000_000.25, 1_600_000_000.25);
  fs.utimesSync(path.join(root, "etc/deep"), 1_500_000_000, 1_500_000_000);
  fs.chmodSync(root, 0o751);
}

describe("captureTree and materializeTree", () => {
  test("round trip to a different directory keeps content, modes, owners, mtimes and links", async () => {
    const src = path.join(tmp, "src");
    fs.mkdirSync(src);
    makeTree(src);
    const w = store.writer();
    const cap = await captureTree(src, w, { concurrency: 3 });
    w.commit();
    expect(cap.entries.map((e) => e.path)).toContain("etc/deep/er/big.bin");
    expect(cap.entries.find((e) => e.path === "hard")?.type).toBe("hardlink");
    expect(cap.entries.find((e) => e.path === "pages-1.img")?.chunkSize).toBe(4096);
    expect(cap.zeroChunks).toBe(54);
    const dest = path.join(tmp, "elsewhere", "restored");
    fs.mkdirSync(path.dirname(dest));
    const r = materializeTree(cap.entries, store, dest);
    expect(r.files).toBe(6);
    expect(describeTree(dest)).toEqual(describeTree(src));
    // Zero pages became holes, not written blocks.
    expect(fs.statSync(path.join(dest, "pages-1.img")).blocks * 512).toBeLessThan(64 * 4096);
    w.close();
  });

  test("materializeTreeYielding makes the same tree as materializeTree, letting timers run between files; never over an existing directory", async () => {
    const src = path.join(tmp, "src");
    fs.mkdirSync(src);
    makeTree(src);
    // Enough files that making them takes several turns of YIELD_EVERY_MS.
    fs.mkdirSync(path.join(src, "many"));
    for (let i = 0; i < 800; i++) fs.writeFileSync(path.join(src, "many", `f${i}`), `file ${i}\n`);
    const w = store.writer();
    const cap = await captureTree(src, w, { concurrency: 3 });
    w.commit();
    w.close();
    const dest = path.join(tmp, "yielding");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const r = await materializeTreeYielding(cap.entries, store, dest);
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(r.files).toBe(806);
    expect(describeTree(dest)).toEqual(describeTree(src));
    // Held the event loop in turns, not all along (only checked when it took long enough to need turns).
    if (ms > 4 * YIELD_EVERY_MS) expect(ticks).toBeGreaterThan(0);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith("yielding.partial-"))).toEqual([]);
    await expect(materializeTreeYielding(cap.entries, store, dest)).rejects.toThrow("already exists");
  }, 60_000);

  test("an unchanged tree is not read again (its earlier entries, chunks still stored); any change, or a chunk gone, reads it", async () => {
    const src = path.join(tmp, "base");
    fs.mkdirSync(src);
    makeTree(src);
    const w1 = store.writer();
    const first = await captureTree(src, w1);
    w1.commit();
    w1.close();
    expect(first.isReused).toBe(false);
    const again = async () => {
      const w = store.writer();
      try {
        return await captureTree(src, w, { unchanged: { fingerprint: first.fingerprint, entries: first.entries } });
      } finally {
        w.close();
      }
    };
    const same = await again();
    expect(same.isReused).toBe(true);
    expect(same.fingerprint).toBe(first.fingerprint);
    expect(same.entries).toEqual(first.entries);
    expect(same.logicalBytes).toBe(first.logicalBytes);
    // Same size and mtime, new bytes: ctime tells.
    const f = path.join(src, "etc/deep/er/big.bin");
    const st = fs.statSync(f);
    const bytes = fs.readFileSync(f);
    bytes[7]! ^= 1;
    fs.writeFileSync(f, bytes);
    fs.utimesSync(f, st.atime, st.mtime);
    const changed = await again();
    expect(changed.isReused).toBe(false);
    expect(changed.fingerprint).not.toBe(first.fingerprint);
    const big = (r: typeof first) => r.entries.find((e) => e.path === "etc/deep/er/big.bin")!;
    expect(Buffer.compare(big(changed).chunks, big(first).chunks)).not.toBe(0);
    // A chunk the store no longer has: read again, even though nothing changed.
    const w = store.writer();
    const now = await captureTree(src, w);
    w.commit();
    w.close();
    store.db.run("DELETE FROM chunks WHERE hash = ?", [big(now).chunks.subarray(0, 32)]);
    const w2 = store.writer();
    const gone = await captureTree(src, w2, { unchanged: { fingerprint: now.fingerprint, entries: now.entries } });
    w2.close();
    expect(gone.isReused).toBe(false);
  });

  test("zero chunks are never stored; identical trees are stored once", async () => {
    const a = path.join(tmp, "a");
    fs.mkdirSync(a);
    fs.writeFileSync(path.join(a, "pages-1.img"), new Uint8Array(1 << 20));
    fs.writeFileSync(path.join(a, "base.bin"), randomBytes(1 << 20));
    const w1 = store.writer();
    await captureTree(a, w1);
    w1.commit();
    expect(store.stats().storedBytes).toBe(1 << 20);
    const b = path.join(tmp, "b");
    fs.cpSync(a, b, { recursive: true });
    const w2 = store.writer();
    await captureTree(b, w2);
    w2.commit();
    expect(w2.newBytes).toBe(0);
    expect(store.stats().storedBytes).toBe(1 << 20);
    w1.close();
    w2.close();
  });

  test("a second capture after 1% of a big page file changed stores about 1% new bytes", async () => {
    const src = path.join(tmp, "pod");
    fs.mkdirSync(src);
    const pages = 8192; // 32 MiB
    const file = path.join(src, "pages-1.img");
    fs.writeFileSync(file, randomBytes(pages * 4096));
    const w1 = store.writer();
    await captureTree(src, w1);
    w1.commit();
    const first = store.stats().storedBytes;
    const fd = fs.openSync(file, "r+");
    const changed = Math.round(pages / 100);
    for (let i = 0; i < changed; i++) fs.writeSync(fd, randomBytes(4096), 0, 4096, ((i * 97) % pages) * 4096);
    fs.closeSync(fd);
    const w2 = store.writer();
    await captureTree(src, w2);
    w2.commit();
    const added = store.stats().storedBytes - first;
    expect(added).toBe(changed * 4096);
    expect(added / first).toBeCloseTo(0.01, 2);
    w1.close();
    w2.close();
  });

  test("a corrupt chunk fails the restore naming hash and file, and leaves nothing", async () => {
    const src = path.join(tmp, "src");
    fs.mkdirSync(path.join(src, "d"), { recursive: true });
    fs.writeFileSync(path.join(src, "d/data"), randomBytes(100_000));
    const w = store.writer();
    const cap = await captureTree(src, w);
    w.commit();
    w.close();
    const entry = cap.entries.find((e) => e.path === "d/data")!;
    const victim = toHex(chunkHash(entry, 1));
    const loc = store.db.query<{ pack: number; offset: number }, [Uint8Array]>("SELECT pack, offset FROM chunks WHERE hash = ?").get(chunkHash(entry, 1))!;
    const packFile = path.join(store.dir, "packs", String(loc.pack).padStart(8, "0") + ".pack");
    const fd = fs.openSync(packFile, "r+");
    const b = new Uint8Array(1);
    fs.readSync(fd, b, 0, 1, loc.offset + 36 + 7);
    b[0]! ^= 0x80;
    fs.writeSync(fd, b, 0, 1, loc.offset + 36 + 7);
    fs.closeSync(fd);
    const dest = path.join(tmp, "out");
    let err: unknown;
    try {
      materializeTree(cap.entries, store, dest);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect((err as Error).message).toBe(`Chunk ${victim} of file "d/data" is corrupt: its bytes no longer match its hash`);
    expect(fs.readdirSync(tmp).sort()).toEqual(["src", "store"]);
  });

  test("restores from chunks that arrived from elsewhere (missing + putBatch)", async () => {
    const src = path.join(tmp, "src");
    fs.mkdirSync(src);
    makeTree(src);
    const w = store.writer();
    const cap = await captureTree(src, w);
    w.commit();
    const peer = ChunkStore.open(path.join(tmp, "peer"), { isDurable: false });
    try {
      const hashes = cap.entries.flatMap((e) => Array.from({ length: chunkCount(e) }, (_, i) => chunkHash(e, i)));
      const pw = peer.writer("transfer");
      const lacking = pw.missing(hashes.map(toHex));
      expect(lacking.length).toBe(new Set(lacking).size); // zero pages are never asked for
      pw.putBatch(lacking.map((h) => ({ hash: h, bytes: store.get(h) })));
      expect(pw.missing(hashes)).toEqual([]);
      const dest = path.join(tmp, "migrated");
      materializeTree(cap.entries, pw, dest); // straight from the uncommitted transfer
      expect(describeTree(dest)).toEqual(describeTree(src));
      pw.commit();
      pw.close();
    } finally {
      peer.close();
    }
    w.close();
  });
});

describe("materializeTree refuses hostile entries", () => {
  const base = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 0, chunkSize: 0, chunks: new Uint8Array(0) };
  const dir = (p: string): FileEntry => ({ ...base, path: p, type: "dir", mode: 0o755 });
  const link = (p: string, target: string): FileEntry => ({ ...base, path: p, type: "symlink", target });
  const file = (p: string): FileEntry => ({ ...base, path: p, type: "file", chunkSize: 4096 });
  const cases: Array<[string, FileEntry[], string]> = [
    ["dot-dot", [file("../escape")], 'unsafe path: it has a ".." component'],
    ["inner dot-dot", [dir("a"), file("a/../../escape")], 'unsafe path: it has a ".." component'],
    ["absolute", [file("/etc/passwd")], "unsafe path: it is absolute"],
    ["NUL", [file("a\0b")], "NUL"],
    ["symlink out", [link("up", "../../../etc")], "points outside the root"],
    ["through a symlink", [link("etc", "/etc"), file("etc/passwd")], 'it lies under "etc", which is a symlink'],
    ["through a relative symlink", [dir("a"), link("a/b", ".."), file("a/b/x")], 'lies under "a/b"'],
    ["hard link out", [{ ...base, path: "h", type: "hardlink", target: "../x" }], "hard link needs a safe target"],
    ["duplicate", [file("x"), dir("x")], "appears twice"],
  ];
  for (const [name, entries, message] of cases) {
    test(name, () => {
      const dest = path.join(tmp, "dest");
      expect(() => materializeTree(entries, store, dest)).toThrow(InvalidManifestError);
      expect(() => materializeTree(entries, store, dest)).toThrow(message);
      expect(fs.existsSync(dest)).toBe(false);
      expect(fs.readdirSync(tmp)).toEqual(["store"]);
    });
  }

  test("an existing destination is refused", () => {
    fs.mkdirSync(path.join(tmp, "there"));
    expect(() => materializeTree([dir(".")], store, path.join(tmp, "there"))).toThrow("already exists");
  });
});

describe("overlayfs upper layers", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tree-overlay-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.skipIf(!isRoot)("whiteouts, opaque directories and FIFOs round-trip (needs root: mknod, trusted.* xattrs)", async () => {
    const { lgetxattr, lsetxattr, mkfifo, mknodWhiteout, OVERLAY_OPAQUE } = await import("../platform/linux/libc.ts");
    const src = path.join(dir, "src");
    fs.mkdirSync(path.join(src, "etc/opaque"), { recursive: true });
    mknodWhiteout(path.join(src, "etc/deleted"));
    lsetxattr(path.join(src, "etc/opaque"), OVERLAY_OPAQUE, "y");
    mkfifo(path.join(src, "etc/fifo"), 0o600);
    const store = ChunkStore.open(path.join(dir, "store"));
    const w = store.writer("t");
    const { entries, skipped } = await captureTree(src, w);
    expect(skipped).toEqual([]);
    expect(entries.find((e) => e.path === "etc/deleted")?.type).toBe("whiteout");
    expect(entries.find((e) => e.path === "etc/fifo")?.type).toBe("fifo");
    expect(entries.find((e) => e.path === "etc/opaque")?.opaque).toBe(true);
    const out = path.join(dir, "out");
    materializeTree(entries, w, out);
    const st = fs.lstatSync(path.join(out, "etc/deleted"));
    expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
    expect(fs.lstatSync(path.join(out, "etc/fifo")).isFIFO()).toBe(true);
    expect(lgetxattr(path.join(out, "etc/opaque"), OVERLAY_OPAQUE)).toBe("y");
    expect(lgetxattr(path.join(out, "etc"), OVERLAY_OPAQUE)).toBeNull();
    w.close();
    store.close();
  });
});

describe("big CRIU files: adopted at capture, linked or copied in bulk at restore, every chunk verified", () => {
  /** A CRIU-like image directory: a big page file (random, zero and repeated pages) and small files. */
  function criuDir(dir: string, pages = 2048): Uint8Array {
    fs.mkdirSync(dir, { recursive: true });
    const data = randomBytes(pages * 4096);
    for (let p = 0; p < pages; p += 11) data.fill(0, p * 4096, (p + 1) * 4096);
    data.copyWithin(40 * 4096, 30 * 4096, 31 * 4096);
    fs.writeFileSync(path.join(dir, "pages-1.img"), data);
    fs.writeFileSync(path.join(dir, "pagemap-1.img"), randomBytes(300));
    fs.writeFileSync(path.join(dir, "core-1.img"), randomBytes(2000));
    return data;
  }

  async function capture(dir: string, previous?: { entries: FileEntry[]; isStored: () => boolean }) {
    const w = store.writer();
    const cap = await captureTree(dir, w, { adopt: true, previous });
    w.commit();
    w.close();
    return { entries: cap.entries, newBytes: w.newBytes };
  }

  test("capture adopts the page file; restore links it back, byte for byte, in a fresh directory", async () => {
    const src = path.join(tmp, "criu");
    const data = criuDir(src);
    const { entries } = await capture(src);
    expect(fs.readdirSync(path.join(store.dir, "packs")).some((f) => f.endsWith(".pages"))).toBe(true);
    fs.rmSync(src, { recursive: true }); // as the checkpoint does
    const out = path.join(tmp, "restored");
    await materializeTreeAsync(entries, store, out);
    expect(Buffer.compare(fs.readFileSync(path.join(out, "pages-1.img")), Buffer.from(data))).toBe(0);
    if (isRoot) expect(fs.statSync(path.join(out, "pages-1.img")).nlink).toBe(2); // linked, not copied
  });

  test("an image whose pages live in several packs is copied in runs and equals the original", async () => {
    const src = path.join(tmp, "criu");
    const data = criuDir(src);
    const first = await capture(src);
    // The next dump: 1% of pages change; known pages come from the previous image's entries.
    const next = Uint8Array.from(data);
    for (let p = 5; p < 2048; p += 100) next.set(randomBytes(4096), p * 4096);
    fs.writeFileSync(path.join(src, "pages-1.img"), next);
    const second = await capture(src, { entries: first.entries, isStored: () => true });
    expect(second.newBytes).toBeLessThan(25 * 4096 + 3000);
    const out = path.join(tmp, "restored2");
    await materializeTreeAsync(second.entries, store, out);
    expect(Buffer.compare(fs.readFileSync(path.join(out, "pages-1.img")), Buffer.from(next))).toBe(0);
    if (isRoot) expect(fs.statSync(path.join(out, "pages-1.img")).nlink).toBe(1);
  });

  test("a staged file (an earlier image's, never a link to the store) is taken over and patched to the new image, which it then equals", async () => {
    const src = path.join(tmp, "criu");
    const data = criuDir(src);
    const first = await capture(src);
    const stageDir = path.join(tmp, "stage");
    await materializeTreeAsync(first.entries, store, stageDir, { isPrivateCopy: true });
    if (isRoot) expect(fs.statSync(path.join(stageDir, "pages-1.img")).nlink).toBe(1);
    // The next image: some pages changed, a page of data zeroed, the file one page longer.
    const next = new Uint8Array(data.byteLength + 4096);
    next.set(data);
    for (let p = 5; p < 2048; p += 100) next.set(randomBytes(4096), p * 4096);
    next.fill(0, 7 * 4096, 8 * 4096);
    next.set(randomBytes(4096), data.byteLength);
    fs.rmSync(path.join(src, "pages-1.img")); // the store adopted that inode
    fs.writeFileSync(path.join(src, "pages-1.img"), next);
    const second = await capture(src, { entries: first.entries, isStored: () => true });
    const staged = new Map(first.entries.filter((e) => e.type === "file").map((e) => [e.path, { path: path.join(stageDir, e.path), entry: e }] as const));
    const out = path.join(tmp, "restored3");
    const { verified } = await materializeTreeAsync(second.entries, store, out, { staged, deferLinkedChecks: true });
    await verified;
    expect(Buffer.compare(fs.readFileSync(path.join(out, "pages-1.img")), Buffer.from(next))).toBe(0);
    expect(fs.existsSync(path.join(stageDir, "pages-1.img"))).toBe(false); // taken over, not copied
    // A staged file that is a link (a store's pack) is never patched.
    const linkedOut = path.join(tmp, "restored4");
    await materializeTreeAsync(first.entries, store, linkedOut);
    const linkedStage = new Map([["pages-1.img", { path: path.join(linkedOut, "pages-1.img"), entry: first.entries.find((e) => e.path === "pages-1.img")! }]]);
    const out5 = path.join(tmp, "restored5");
    await materializeTreeAsync(second.entries, store, out5, { staged: linkedStage });
    expect(Buffer.compare(fs.readFileSync(path.join(out5, "pages-1.img")), Buffer.from(next))).toBe(0);
    expect(Buffer.compare(fs.readFileSync(path.join(linkedOut, "pages-1.img")), Buffer.from(data))).toBe(0);
  });

  test("a patched staged file is not read back whole: only the chunks written are checked, as they are written", async () => {
    const src = path.join(tmp, "criu");
    const data = criuDir(src);
    const first = await capture(src);
    const stageDir = path.join(tmp, "stage");
    await materializeTreeAsync(first.entries, store, stageDir, { isPrivateCopy: true });
    const next = new Uint8Array(data);
    for (let p = 3; p < 2048; p += 200) next.set(randomBytes(4096), p * 4096);
    fs.rmSync(path.join(src, "pages-1.img"));
    fs.writeFileSync(path.join(src, "pages-1.img"), next);
    const second = await capture(src, { entries: first.entries, isStored: () => true });
    const staged = new Map(first.entries.filter((e) => e.type === "file").map((e) => [e.path, { path: path.join(stageDir, e.path), entry: e }] as const));
    // Every file read back whole goes through hashFile: count them.
    const shared = ChunkWorkers.shared();
    const hashed: string[] = [];
    const workers = new Proxy(shared, {
      get(target, prop, receiver) {
        if (prop === "hashFile") {
          return (p: string, ...rest: unknown[]) => {
            hashed.push(p);
            return (target.hashFile as (...a: unknown[]) => unknown).call(target, p, ...rest);
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const out = path.join(tmp, "patched");
    const { verified } = await materializeTreeAsync(second.entries, store, out, { staged, deferLinkedChecks: true, workers });
    await verified;
    expect(hashed).toEqual([]);
    expect(Buffer.compare(fs.readFileSync(path.join(out, "pages-1.img")), Buffer.from(next))).toBe(0);
  });

  test("a flipped bit in the adopted pack: the linked restore names the page's hash and the file, and leaves nothing", async () => {
    const src = path.join(tmp, "criu");
    criuDir(src);
    const { entries } = await capture(src);
    const packDir = path.join(store.dir, "packs");
    const pack = path.join(packDir, fs.readdirSync(packDir).find((f) => f.endsWith(".pages"))!);
    const fd = fs.openSync(pack, "r+");
    const b = new Uint8Array(1);
    fs.readSync(fd, b, 0, 1, 100 * 4096 + 5);
    b[0]! ^= 0x20;
    fs.writeSync(fd, b, 0, 1, 100 * 4096 + 5);
    fs.closeSync(fd);
    const e = entries.find((x) => x.path === "pages-1.img")!;
    const out = path.join(tmp, "restored");
    const err = await materializeTreeAsync(entries, store, out).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect((err as Error).message).toBe(`Chunk ${toHex(chunkHash(e, 100))} of file "pages-1.img" is corrupt: its bytes no longer match its hash`);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith("restored"))).toEqual([]);
    // The copy path (the same file, not root's) finds it too.
    const copy = entries.map((x) => (x.path === "pages-1.img" ? { ...x, mode: 0o666 } : x));
    const err2 = await materializeTreeAsync(copy, store, out).catch((x: unknown) => x);
    expect((err2 as Error).message).toContain(toHex(chunkHash(e, 100)));
  });

  test("deferLinkedChecks: the tree is there at once, and `verified` names a bad page of a linked file afterwards", async () => {
    const src = path.join(tmp, "criu");
    criuDir(src);
    const { entries } = await capture(src);
    const good = await materializeTreeAsync(entries, store, path.join(tmp, "ok"), { deferLinkedChecks: true });
    await good.verified;
    const packDir = path.join(store.dir, "packs");
    const pack = path.join(packDir, fs.readdirSync(packDir).find((f) => f.endsWith(".pages"))!);
    const fd = fs.openSync(pack, "r+");
    fs.writeSync(fd, new Uint8Array([1, 2, 3]), 0, 3, 1500 * 4096 + 9);
    fs.closeSync(fd);
    const bad = await materializeTreeAsync(entries, store, path.join(tmp, "bad"), { deferLinkedChecks: true });
    expect(fs.existsSync(path.join(tmp, "bad", "pages-1.img"))).toBe(true);
    const err = await bad.verified.catch((x: unknown) => x);
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect((err as CorruptChunkError).hash).toBe(toHex(chunkHash(entries.find((x) => x.path === "pages-1.img")!, 1500)));
    expect((err as CorruptChunkError).path).toBe("pages-1.img");
  });

  test("startRawPackChecks: a restore's page packs are checked from the start; the linked file waits for that check and names a bad page", async () => {
    if (!isRoot) return; // linking needs root's files
    const src = path.join(tmp, "criu");
    criuDir(src);
    const { entries } = await capture(src);
    const packDir = path.join(store.dir, "packs");
    const pack = path.join(packDir, fs.readdirSync(packDir).find((f) => f.endsWith(".pages"))!);
    const checks = startRawPackChecks(entries, store);
    expect([...checks.keys()]).toEqual([pack]);
    await checks.get(pack);
    // A check already made is what the linked file waits for: a page damaged after it is not read again here.
    const fd = fs.openSync(pack, "r+");
    fs.writeSync(fd, new Uint8Array([1, 2, 3]), 0, 3, 700 * 4096 + 9);
    fs.closeSync(fd);
    const reused = await materializeTreeAsync(entries, store, path.join(tmp, "reused"), { deferLinkedChecks: true, rawPackChecks: checks });
    expect(await reused.verified).toBeUndefined();
    // Started on the damaged pack, the check names the page, through `verified`.
    const fresh = startRawPackChecks(entries, store);
    const bad = await materializeTreeAsync(entries, store, path.join(tmp, "bad"), { deferLinkedChecks: true, rawPackChecks: fresh });
    const err = await bad.verified.catch((x: unknown) => x);
    expect(err).toBeInstanceOf(CorruptChunkError);
    expect((err as CorruptChunkError).hash).toBe(toHex(chunkHash(entries.find((x) => x.path === "pages-1.img")!, 700)));
  });

  test("a page file that changed between hashing and capture is refused", async () => {
    const src = path.join(tmp, "criu");
    criuDir(src, 1100);
    const w = store.writer();
    const stale = Promise.resolve({ size: 1, chunkSize: 4096, hashes: new Uint8Array(32), zero: new Uint8Array(1) });
    const err = await captureTree(src, w, { adopt: true, hashing: new Map([["pages-1.img", stale]]) }).catch((x: unknown) => x);
    w.abort();
    expect(String(err)).toContain("changed while it was read");
  });
});
