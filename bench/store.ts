/**
 * Store and image-format figures, as JSON on stdout:
 *   node_modules/.bin/bun bench/store.ts [--mib 512] [--dir /var/tmp]
 *
 * - hashing throughput of 4 KiB pages: native SHA-256 vs @noble/hashes;
 * - put/get throughput of the chunk store (pack files + sqlite index) against
 *   the alternative it was chosen over (chunks as sqlite blobs), at 4 KiB and
 *   64 KiB chunks (the file chunk size);
 * - missing() for 262,144 hashes, half of them stored;
 * - capture, export, import and materialize throughput on a page image of
 *   --mib MiB (3/4 random pages, 1/4 zero pages).
 */
import { Database } from "bun:sqlite";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { exportImage } from "../src/checkpoint/export.ts";
import { importImage } from "../src/checkpoint/import.ts";
import { FORMAT_VERSION } from "../src/image/manifest.ts";
import { captureTree, materializeTree } from "../src/checkpoint/tree.ts";
import { ChunkStore } from "../src/store/chunk-store.ts";
import { type Hash, hashEquals, sha256 } from "../src/image/hash.ts";
import { ImageCatalogue } from "../src/store/image-catalogue.ts";
import { VERSION } from "../src/version.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MIB = Number(arg("mib", "512"));
const STORE_MIB = Math.min(256, MIB);
const root = fs.mkdtempSync(path.join(arg("dir", os.tmpdir()), "autopod-bench-"));
const mbps = (bytes: number, ms: number) => Math.round(bytes / 1e6 / (ms / 1000));
const time = <T>(fn: () => T): [T, number] => {
  const t = performance.now();
  const r = fn();
  return [r, performance.now() - t];
};
const timeAsync = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
};

function randomPages(bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(bytes, i + 65536)));
  return b;
}

/** The design not taken: chunks as blobs in sqlite (WAL), verified on read. */
class SqliteBlobStore {
  readonly db: Database;
  constructor(file: string) {
    this.db = new Database(file, { create: true, strict: true });
    // Batches are not synced; finish() syncs the WAL once, like the pack writer's one commit.
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    this.db.exec("CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, data BLOB NOT NULL)");
  }
  putMany(chunks: Uint8Array[]): Hash[] {
    const ins = this.db.query<unknown, [Uint8Array, Uint8Array]>("INSERT OR IGNORE INTO chunks(hash, data) VALUES (?, ?)");
    const out: Hash[] = [];
    this.db.transaction(() => {
      for (const c of chunks) {
        const h = sha256(c);
        ins.run(h, c);
        out.push(h);
      }
    })();
    return out;
  }
  finish(): void {
    this.db.exec("PRAGMA synchronous = FULL");
    this.db.exec("CREATE TABLE IF NOT EXISTS done(x); INSERT INTO done VALUES (1)");
  }
  get(h: Hash): Uint8Array {
    const row = this.db.query<{ data: Uint8Array }, [Uint8Array]>("SELECT data FROM chunks WHERE hash = ?").get(h);
    if (row === null || !hashEquals(sha256(row.data), h)) throw new Error("missing or corrupt");
    return row.data;
  }
  close() {
    this.db.close();
  }
}

function storeBench(chunkSize: number) {
  const total = STORE_MIB * 2 ** 20;
  const data = randomPages(total);
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < total; off += chunkSize) chunks.push(data.subarray(off, off + chunkSize));
  // Both designs are durable once, at the end (like one checkpoint); sqlite needs bounded transactions on the way.
  const batch = Math.max(1, (32 << 20) / chunkSize);
  const order = chunks.map((_, i) => i).sort(() => Math.random() - 0.5);

  const packDir = path.join(root, `pack-${chunkSize}`);
  const store = ChunkStore.open(packDir);
  const [hashes, putMs] = time(() => {
    const w = store.writer("bench");
    const hs: Hash[] = [];
    for (let i = 0; i < chunks.length; i++) {
      hs.push(w.put(chunks[i]!));
    }
    w.commit();
    w.close();
    return hs;
  });
  const [, getMs] = time(() => {
    for (const i of order) store.get(hashes[i]!);
  });
  const packStats = store.stats();
  store.close();

  const sq = new SqliteBlobStore(path.join(root, `blobs-${chunkSize}.sqlite`));
  const [sqHashes, sqPutMs] = time(() => {
    const hs: Hash[] = [];
    for (let i = 0; i < chunks.length; i += batch) hs.push(...sq.putMany(chunks.slice(i, i + batch)));
    sq.finish();
    return hs;
  });
  const [, sqGetMs] = time(() => {
    for (const i of order) sq.get(sqHashes[i]!);
  });
  sq.close();
  const sqBytes = ["", "-wal"].reduce(
    (s, ext) =>
      s + (fs.existsSync(path.join(root, `blobs-${chunkSize}.sqlite${ext}`)) ? fs.statSync(path.join(root, `blobs-${chunkSize}.sqlite${ext}`)).size : 0),
    0,
  );
  return {
    chunkSize,
    mib: STORE_MIB,
    chunks: chunks.length,
    pack: { putMBps: mbps(total, putMs), getMBps: mbps(total, getMs), diskBytes: packStats.packBytes + fs.statSync(path.join(packDir, "index.sqlite")).size },
    sqliteBlobs: { putMBps: mbps(total, sqPutMs), getMBps: mbps(total, sqGetMs), diskBytes: sqBytes },
  };
}

function hashingBench() {
  const pages = randomPages(256 << 20);
  const [, nativeMs] = time(() => {
    for (let off = 0; off < pages.byteLength; off += 4096) sha256(pages.subarray(off, off + 4096));
  });
  const nobleBytes = 32 << 20;
  const [, nobleMs] = time(() => {
    for (let off = 0; off < nobleBytes; off += 4096) nobleSha256(pages.subarray(off, off + 4096));
  });
  return { nativeSha256MBps: mbps(pages.byteLength, nativeMs), nobleSha256MBps: mbps(nobleBytes, nobleMs) };
}

function missingBench() {
  const store = ChunkStore.open(path.join(root, "missing"), { isDurable: false });
  const N = 262_144;
  const hashes: Uint8Array[] = [];
  const w = store.writer();
  const page = new Uint8Array(64);
  const view = new DataView(page.buffer);
  for (let i = 0; i < N; i++) {
    view.setUint32(0, i);
    if (i % 2 === 0) hashes.push(w.put(page));
    else hashes.push(sha256(page));
  }
  w.commit();
  w.close();
  const shuffled = hashes.sort(() => Math.random() - 0.5);
  const [lacking, ms] = time(() => store.missing(shuffled));
  const hex = shuffled.map((h) => Buffer.from(h).toString("hex"));
  const [lackingHex, hexMs] = time(() => store.missing(hex));
  const [, pointMs] = time(() => {
    let n = 0;
    store.db.transaction(() => {
      for (const h of shuffled) if (!store.has(h)) n++;
    })();
    return n;
  });
  store.close();
  return {
    hashes: N,
    lacking: lacking.length,
    ms: Math.round(ms),
    hexMs: Math.round(hexMs),
    lackingHex: lackingHex.length,
    pointLookupsMs: Math.round(pointMs),
  };
}

async function imageBench() {
  const pod = path.join(root, "pod");
  fs.mkdirSync(pod);
  const bytes = MIB * 2 ** 20;
  const fd = fs.openSync(path.join(pod, "pages-1.img"), "w");
  const block = 16 << 20;
  for (let off = 0; off < bytes; off += block) {
    const b = randomPages(Math.min(block, bytes - off));
    for (let p = 3 * 4096; p < b.byteLength; p += 4 * 4096) b.fill(0, p, p + 4096); // every 4th page zero
    fs.writeSync(fd, b, 0, b.byteLength, off);
  }
  fs.closeSync(fd);

  const a = ChunkStore.open(path.join(root, "img-a"));
  const ca = new ImageCatalogue(a);
  const [id, captureMs] = await timeAsync(async () => {
    const w = a.writer("checkpoint");
    const cap = await captureTree(pod, w);
    const id = ca.addManifest(
      {
        format: FORMAT_VERSION,
        autopodVersion: VERSION,
        criuVersion: null,
        kernelRelease: os.release(),
        cpuFlags: [],
        createdAt: new Date().toISOString(),
        parent: null,
        pod: { name: "bench", command: [] },
        criu: cap.entries,
        rootfs: [],
        volumes: [],
      },
      w,
    );
    w.close();
    return id;
  });
  const manifestBytes = ca.manifestBytes(id).byteLength;
  const file = path.join(root, "image.apod");
  const [exp, exportMs] = await timeAsync(async () => {
    const out = fs.createWriteStream(file);
    const r = await exportImage(ca, id, out);
    await new Promise<void>((resolve) => out.end(resolve));
    return r;
  });
  const b = ChunkStore.open(path.join(root, "img-b"));
  const cb = new ImageCatalogue(b);
  const [, importMs] = await timeAsync(() => importImage(cb, fs.createReadStream(file, { highWaterMark: 1 << 20 })));
  const [, reimportMs] = await timeAsync(() => importImage(cb, fs.createReadStream(file, { highWaterMark: 1 << 20 })));
  const [, materializeMs] = time(() => materializeTree(cb.manifest(id).criu, b, path.join(root, "restored")));
  const stats = b.stats();
  a.close();
  b.close();
  return {
    mib: MIB,
    zeroPageShare: 0.25,
    captureMBps: mbps(bytes, captureMs),
    exportMBps: mbps(bytes, exportMs),
    importMBps: mbps(bytes, importMs),
    reimportAllPresentMBps: mbps(bytes, reimportMs),
    materializeMBps: mbps(bytes, materializeMs),
    exportFileBytes: exp.totalBytes,
    manifestBytes,
    storedBytes: stats.storedBytes,
    logicalBytes: bytes,
  };
}

try {
  const out = {
    when: new Date().toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), bun: Bun.version },
    hashing4KiB: hashingBench(),
    store: [storeBench(4096), storeBench(64 << 10)],
    missing: missingBench(),
    image: await imageBench(),
  };
  console.log(JSON.stringify(out, null, 2));
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
