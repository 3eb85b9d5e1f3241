import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PackAppender, RECORD_HEADER_BYTES, packPath } from "./_pack.ts";
import { ChunkWorkers, type CopyRun } from "./chunk-workers.ts";
import { CorruptChunkError } from "./errors.ts";
import { HASH_BYTES, ZERO_HASH, sha256 } from "../image/hash.ts";
import { NATIVE_LIBRARY, nativeHashing } from "./sha256x16.ts";

let tmp: string;
const pool = new ChunkWorkers(2);
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "chunk-workers-"));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterAll(() => pool.close());

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

/** Random pages with some zero pages and repeats, and a short last page. */
function sample(pages: number, tail = 1000): Uint8Array {
  const b = random(pages * 4096 + tail);
  for (let p = 0; p < pages; p += 7) b.fill(0, p * 4096, (p + 1) * 4096);
  b.copyWithin(5 * 4096, 3 * 4096, 4 * 4096);
  return b;
}

/** What one thread computes: the reference. */
function serialHashes(b: Uint8Array, cs: number): Uint8Array {
  const n = Math.ceil(b.byteLength / cs);
  const out = new Uint8Array(n * HASH_BYTES);
  for (let i = 0; i < n; i++) {
    const v = b.subarray(i * cs, Math.min(b.byteLength, (i + 1) * cs));
    out.set(v.every((x) => x === 0) ? ZERO_HASH : sha256(v), i * HASH_BYTES);
  }
  return out;
}

describe("ChunkWorkers.hashFile", () => {
  test("parallel hashes equal serial ones: pages, zero pages, a short last page, several blocks", async () => {
    const data = sample(700);
    const f = path.join(tmp, "pages-1.img");
    fs.writeFileSync(f, data);
    const got = await pool.hashFile(f, 4096);
    expect(got.size).toBe(data.byteLength);
    expect(Buffer.compare(got.hashes, serialHashes(data, 4096))).toBe(0);
    expect(got.zero.length).toBe(701);
    expect(got.zero[0]).toBe(1);
    expect(got.zero[1]).toBe(0);
    const big = await pool.hashFile(f, 65536);
    expect(Buffer.compare(big.hashes, serialHashes(data, 65536))).toBe(0);
  });

  test("a whole file hashed on fewer threads than the pool has keeps to them (a restore's check leaves CRIU a core); a growing one gets them all once it ends", async () => {
    const data = sample(2000);
    const f = path.join(tmp, "pages-few.img");
    fs.writeFileSync(f, data);
    const one = await pool.hashFile(f, 4096, 1);
    expect(one.threads).toBe(1);
    expect(Buffer.compare(one.hashes, serialHashes(data, 4096))).toBe(0);
    expect((await pool.hashFile(f, 4096)).threads).toBe(2);
    const growing = pool.hashGrowingFile(f, 4096, 1);
    growing.finish();
    expect((await growing.result).threads).toBe(2);
  });

  test("hashFileThenAll: on the threads given until told to use them all (a restore's check, once CRIU is done); told too late, nothing changes", async () => {
    const data = sample(4000);
    const f = path.join(tmp, "pages-later.img");
    fs.writeFileSync(f, data);
    const alone = pool.hashFileThenAll(f, 4096, 1);
    const got = await alone.result;
    expect(got.threads).toBe(1);
    alone.useAllThreads(); // after the end: a no-op
    const joined = pool.hashFileThenAll(f, 4096, 1);
    joined.useAllThreads();
    const all = await joined.result;
    expect(all.threads).toBe(2);
    expect(Buffer.compare(all.hashes, serialHashes(data, 4096))).toBe(0);
    expect(Buffer.compare(got.hashes, all.hashes)).toBe(0);
    expect((await pool.hashFile(f, 4096, 1)).threads).toBe(1); // the pool is as it was
  });

  test("an empty file has no chunks; a missing one is an error", async () => {
    const f = path.join(tmp, "empty");
    fs.writeFileSync(f, "");
    const got = await pool.hashFile(f, 4096);
    expect(got.hashes.byteLength).toBe(0);
    const e = await pool.hashFile(path.join(tmp, "nope"), 4096).catch((x: Error) => x);
    expect(String(e)).toMatch(/nope/);
  });

  test("a file that grows while it is hashed (as CRIU writes pages) hashes like the finished file", async () => {
    const data = sample(900, 123);
    const f = path.join(tmp, "pages-2.img");
    const fd = fs.openSync(f, "w");
    const h = pool.hashGrowingFile(f, 4096);
    // Appends in uneven pieces, with pauses, crossing block and page boundaries.
    for (let off = 0; off < data.byteLength; ) {
      const n = Math.min(data.byteLength - off, 300_001);
      fs.writeSync(fd, data, off, n, off);
      off += n;
      await Bun.sleep(3);
    }
    fs.closeSync(fd);
    h.finish();
    const got = await h.result;
    expect(got.size).toBe(data.byteLength);
    expect(Buffer.compare(got.hashes, serialHashes(data, 4096))).toBe(0);
  });

  test("an aborted growing hash rejects, and the pool goes on working", async () => {
    const f = path.join(tmp, "pages-3.img");
    fs.writeFileSync(f, random(4096 * 3));
    const h = pool.hashGrowingFile(f, 4096);
    await Bun.sleep(10);
    h.abort("the dump failed");
    const e = await h.result.catch((x: Error) => x);
    expect(String(e)).toMatch(/the dump failed/);
    const again = await pool.hashFile(f, 4096);
    expect(again.hashes.byteLength).toBe(3 * HASH_BYTES);
  });
});

describe("ChunkWorkers.copyVerified", () => {
  /** A pack with records of the sample's pages, plus a raw copy of it, and runs to rebuild the file from either. */
  function packOf(data: Uint8Array): { packs: string[]; packRuns: CopyRun[]; rawRuns: CopyRun[]; expected: Uint8Array } {
    const dir = path.join(tmp, "packs");
    fs.mkdirSync(dir, { recursive: true });
    let id = 1;
    const app = new PackAppender(dir, 1 << 30, () => id++);
    const expected = serialHashes(data, 4096);
    const n = Math.ceil(data.byteLength / 4096);
    const packRuns: CopyRun[] = [];
    const rawRuns: CopyRun[] = [];
    for (let i = 0; i < n; i++) {
      const v = data.subarray(i * 4096, Math.min(data.byteLength, (i + 1) * 4096));
      const h = expected.subarray(i * 32, i * 32 + 32);
      if (v.every((x) => x === 0)) continue;
      const loc = app.append(h, v);
      const last = packRuns[packRuns.length - 1];
      if (
        last &&
        last.first + last.count === i &&
        last.length === v.byteLength &&
        last.offset + last.count * (RECORD_HEADER_BYTES + last.length) === loc.offset &&
        last.count < 100
      )
        last.count++;
      else packRuns.push({ pack: 0, offset: loc.offset, headerBytes: RECORD_HEADER_BYTES, length: v.byteLength, count: 1, first: i });
      rawRuns.push({ pack: 1, offset: i * 4096, headerBytes: 0, length: v.byteLength, count: 1, first: i });
    }
    app.sync(false);
    app.closeFiles();
    const raw = path.join(dir, "raw");
    fs.writeFileSync(raw, data);
    return { packs: [packPath(dir, 1), raw], packRuns, rawRuns, expected };
  }

  function emptyFile(size: number): string {
    const f = path.join(tmp, `out-${Math.random()}`);
    fs.writeFileSync(f, "");
    fs.truncateSync(f, size);
    return f;
  }

  test("rebuilds a file from pack records and from a raw pack, byte for byte", async () => {
    const data = sample(500, 77);
    const { packs, packRuns, rawRuns, expected } = packOf(data);
    for (const runs of [packRuns, rawRuns]) {
      const out = emptyFile(data.byteLength);
      await pool.copyVerified(out, 4096, expected, packs, runs);
      expect(Buffer.compare(fs.readFileSync(out), Buffer.from(data))).toBe(0);
    }
  });

  test("a flipped bit in a chunk, or in a record's header, names the chunk's hash", async () => {
    const data = sample(300);
    const { packs, packRuns, rawRuns, expected } = packOf(data);
    // Data bit in the raw pack at page 10.
    const fd = fs.openSync(packs[1]!, "r+");
    const b = new Uint8Array(1);
    fs.readSync(fd, b, 0, 1, 10 * 4096 + 100);
    b[0]! ^= 1;
    fs.writeSync(fd, b, 0, 1, 10 * 4096 + 100);
    fs.closeSync(fd);
    const e = await pool.copyVerified(emptyFile(data.byteLength), 4096, expected, packs, rawRuns).catch((x) => x);
    expect(e).toBeInstanceOf(CorruptChunkError);
    expect((e as CorruptChunkError).hash).toBe(Buffer.from(expected.subarray(10 * 32, 11 * 32)).toString("hex"));
    // A header's hash byte in the pack, at the first record of the second run.
    const run = packRuns[1]!;
    const pfd = fs.openSync(packs[0]!, "r+");
    fs.readSync(pfd, b, 0, 1, run.offset + 3);
    b[0]! ^= 1;
    fs.writeSync(pfd, b, 0, 1, run.offset + 3);
    fs.closeSync(pfd);
    const e2 = await pool.copyVerified(emptyFile(data.byteLength), 4096, expected, packs, packRuns).catch((x) => x);
    expect(e2).toBeInstanceOf(CorruptChunkError);
    expect((e2 as CorruptChunkError).message).toContain("disagree");
  });
});

describe("the native SHA-256 of 16 pages at a time", () => {
  const cpu = fs.readFileSync("/proc/cpuinfo", "utf8");
  const hasAvx512 = /\bavx512f\b/.test(cpu) && /\bavx512bw\b/.test(cpu);
  // Without AVX-512, the SHA extensions (four pages interleaved) with SSSE3 and SSE4.1.
  const hasNativeCpu = hasAvx512 || (/\bsha_ni\b/.test(cpu) && /\bssse3\b/.test(cpu) && /\bsse4_1\b/.test(cpu));
  const noAvx = "skipped: this CPU has neither AVX-512F/BW nor the SHA extensions, so the native SHA-256 cannot run here (chunks are hashed with Bun's)";
  if (!hasNativeCpu) console.warn(`SKIP the native SHA-256 tests: ${noAvx}`);
  const plain = new ChunkWorkers(2, { native: false });
  afterAll(() => plain.close());

  test("threads not given the library say they run Bun's SHA-256, and so do the hashes they make", async () => {
    expect(plain.isNative).toBe(false);
    expect(await plain.hashers()).toEqual(["bun", "bun"]);
    const f = path.join(tmp, "p");
    fs.writeFileSync(f, sample(40));
    expect((await plain.hashFile(f, 4096)).hasher).toBe("bun");
  });

  test("a thread whose dlopen fails says so: it runs Bun's SHA-256, with the same digests, and is not counted as native", async () => {
    const broken = new ChunkWorkers(2, { library: path.join(tmp, "no-such-libsha256x16.so") });
    try {
      expect(await broken.hashers()).toEqual(["bun", "bun"]);
      const data = sample(100);
      const f = path.join(tmp, "p");
      fs.writeFileSync(f, data);
      const h = await broken.hashFile(f, 4096);
      expect(h.hasher).toBe("bun");
      expect(Buffer.compare(h.hashes, serialHashes(data, 4096))).toBe(0);
    } finally {
      broken.close();
    }
  });

  test.skipIf(!hasNativeCpu)(
    `is used on a CPU with AVX-512 or the SHA extensions (the library is built by build.ts)${hasNativeCpu ? "" : ` (${noAvx})`}`,
    async () => {
      expect(fs.existsSync(NATIVE_LIBRARY) ? "built" : `missing: run \`bun build.ts\` to compile ${NATIVE_LIBRARY}`).toBe("built");
      expect(nativeHashing().way).toBe(hasAvx512 ? "avx512" : "sha-ni");
      expect(pool.isNative).toBe(true);
      expect(await pool.hashers()).toEqual(["native", "native"]);
      const f = path.join(tmp, "p");
      fs.writeFileSync(f, sample(100));
      expect((await pool.hashFile(f, 4096)).hasher).toBe("native");
    },
  );

  test.skipIf(!hasNativeCpu)(
    `gives Bun's digests: random pages, zero pages (few and most), a short last page, 16-page groups and leftovers${hasNativeCpu ? "" : ` (${noAvx})`}`,
    async () => {
      const mostlyZero = new Uint8Array(300 * 4096);
      for (let p = 0; p < 300; p += 3) crypto.getRandomValues(mostlyZero.subarray(p * 4096, p * 4096 + 4096));
      for (const data of [sample(1000, 1000), random(256 * 4096), random(17 * 4096 + 4095), mostlyZero]) {
        const f = path.join(tmp, `p-${Math.random()}`);
        fs.writeFileSync(f, data);
        const [a, b] = [await pool.hashFile(f, 4096), await plain.hashFile(f, 4096)];
        expect([a.hasher, b.hasher]).toEqual(["native", "bun"]);
        expect(Buffer.compare(a.hashes, b.hashes)).toBe(0);
        expect(Buffer.compare(a.hashes, serialHashes(data, 4096))).toBe(0);
        expect(Buffer.compare(a.zero, b.zero)).toBe(0);
      }
    },
  );

  test("a bad page in the middle of a 16-page group is the one named", async () => {
    const data = random(300 * 4096);
    const expected = serialHashes(data, 4096);
    const raw = path.join(tmp, "raw");
    data[37 * 4096 + 5]! ^= 0x40;
    fs.writeFileSync(raw, data);
    const out = path.join(tmp, "out");
    fs.writeFileSync(out, "");
    fs.truncateSync(out, data.byteLength);
    const e = await pool.copyVerified(out, 4096, expected, [raw], [{ pack: 0, offset: 0, headerBytes: 0, length: 4096, count: 300, first: 0 }]).catch((x) => x);
    expect(e).toBeInstanceOf(CorruptChunkError);
    expect((e as CorruptChunkError).hash).toBe(Buffer.from(expected.subarray(37 * 32, 38 * 32)).toString("hex"));
  });
});

describe("ChunkWorkers: several growing files at once", () => {
  test("a file that stops growing does not hold the threads from the next one (CRIU writes one task's pages after another)", async () => {
    const a = path.join(tmp, "pages-1.img");
    const b = path.join(tmp, "pages-2.img");
    const da = sample(10);
    const db = sample(600);
    fs.writeFileSync(a, da);
    const ha = pool.hashGrowingFile(a, 4096);
    await Bun.sleep(20);
    const fd = fs.openSync(b, "w");
    const hb = pool.hashGrowingFile(b, 4096);
    for (let off = 0; off < db.byteLength; off += 1 << 20) {
      fs.writeSync(fd, db, off, Math.min(1 << 20, db.byteLength - off), off);
      await Bun.sleep(15);
    }
    fs.closeSync(fd);
    // The first file is not finished, yet the second one's full blocks get hashed.
    for (let i = 0; i < 200 && hb.hashedBytes < 2 << 20; i++) await Bun.sleep(5);
    expect(hb.hashedBytes).toBeGreaterThanOrEqual(2 << 20);
    expect(ha.hashedBytes).toBe(0); // its only block is short: it waits for its end
    ha.finish();
    hb.finish();
    const [ra, rb] = await Promise.all([ha.result, hb.result]);
    expect(Buffer.compare(ra.hashes, serialHashes(da, 4096))).toBe(0);
    expect(Buffer.compare(rb.hashes, serialHashes(db, 4096))).toBe(0);
  });
});

describe("ChunkWorkers.syncFile", () => {
  test("syncs on its own thread: the event loop and fs.promises keep going", async () => {
    const f = path.join(tmp, "pages-9.img");
    fs.writeFileSync(f, random(8 << 20));
    let ticks = 0;
    const iv = setInterval(() => ticks++, 1);
    const syncing = pool.syncFile(f);
    const read = await fs.promises.readFile(f); // not queued behind the sync
    await syncing;
    clearInterval(iv);
    expect(read.byteLength).toBe(8 << 20);
    const err = await pool.syncFile(path.join(tmp, "nope")).catch((e: Error) => e);
    expect(String(err)).toContain("nope");
  });
});

describe("ChunkWorkers.writeBehind", () => {
  test("starts writing a growing file as it grows, and all of it once the writer is done", async () => {
    const file = path.join(tmp, "pages-1.img");
    const fd = fs.openSync(file, "w");
    const wb = pool.writeBehind(file);
    for (let i = 0; i < 3; i++) {
      fs.writeSync(fd, random(5 << 20));
      await Bun.sleep(30);
    }
    fs.writeSync(fd, random(1000)); // a tail short of a step
    fs.closeSync(fd);
    expect(await wb.finish()).toBe(15 * (1 << 20) + 1000);
    expect(fs.statSync(file).size).toBe(15 * (1 << 20) + 1000);
  });

  test("a file that cannot be opened only means nothing was written ahead", async () => {
    expect(await pool.writeBehind(path.join(tmp, "missing.img")).finish()).toBe(0);
    // The thread goes on working.
    const file = path.join(tmp, "x");
    fs.writeFileSync(file, random(4096));
    await pool.syncFile(file);
  });
});

describe("ChunkWorkers and process exit", () => {
  test("idle threads never keep a process alive, whatever the order jobs end in", async () => {
    const script = `
      import { ChunkWorkers } from ${JSON.stringify(path.resolve(import.meta.dir, "chunk-workers.ts"))};
      const fs = require("node:fs");
      const f = process.argv[2];
      fs.writeFileSync(f, new Uint8Array(3 << 20).fill(7));
      const w = new ChunkWorkers(2);
      const syncing = w.syncFile(f);
      await w.hashFile(f, 4096);
      await syncing;
      const g = w.hashGrowingFile(f, 4096);
      g.finish();
      await g.result;
      console.log("done");
    `;
    const file = path.join(tmp, "exit.ts");
    fs.writeFileSync(file, script);
    const p = Bun.spawn([process.execPath, file, path.join(tmp, "data")], { stdout: "pipe" });
    const timer = setTimeout(() => p.kill(), 10_000);
    const code = await p.exited;
    clearTimeout(timer);
    expect(await new Response(p.stdout).text()).toBe("done\n");
    expect(code).toBe(0);
  });
});

describe("ChunkWorkers.shared", () => {
  test("is made as configureShared says (the agent's store.hash_threads and store.native_hash), and cannot be configured once made", () => {
    // In a process of its own: this one's shared pool may exist already.
    const script = `
      import { ChunkWorkers } from ${JSON.stringify(path.join(import.meta.dir, "chunk-workers.ts"))};
      ChunkWorkers.configureShared({ threads: 3, native: false });
      const w = ChunkWorkers.shared();
      let again = "allowed";
      try { ChunkWorkers.configureShared({ threads: 1 }); } catch (e) { again = e.message; }
      console.log(JSON.stringify({ threads: w.threads, isNative: w.isNative, same: ChunkWorkers.shared() === w, again }));
    `;
    const r = Bun.spawnSync([process.execPath, "-e", script], { stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(JSON.parse(r.stdout.toString())).toEqual({
      threads: 3,
      isNative: false,
      same: true,
      again: "The shared hashing threads are already running: configure them before their first use",
    });
  });

  test("native hashing turned off by the config is off, whatever the CPU", () => {
    expect(nativeHashing(false)).toEqual({ path: null, why: "turned off" });
    expect(nativeHashing(true).why).not.toBe("turned off");
  });

  test("threads 0 means the default", () => {
    const r = Bun.spawnSync([
      process.execPath,
      "-e",
      `import { ChunkWorkers } from ${JSON.stringify(path.join(import.meta.dir, "chunk-workers.ts"))};
      ChunkWorkers.configureShared({ threads: 0 }); console.log(ChunkWorkers.shared().threads === new ChunkWorkers().threads);`,
    ]);
    expect(r.stdout.toString().trim()).toBe("true");
  });
});
