#!/usr/bin/env bun
/**
 * The CPU ceiling of each side of an image transfer, in one process, no
 * network, as JSON on stdout:
 *   node_modules/.bin/bun bench/transfer-cpu.ts [--mib 512] [--dir /var/tmp]
 *
 * A page image of --mib MiB of random pages is captured into store A; then
 * - export: the export stream of all its chunks as a peer's push sends it
 *   (chunks by index, not hashed again: the importer verifies), drained
 *   (sender: read, frame);
 * - import: that stream imported into an empty store B as a peer's push is
 *   (keepPartial, isExpectedNew, chunks verified on the hashing threads),
 *   from bytes already in memory (receiver: parse, verify, write, commit);
 * - both at once: export piped straight into import.
 * Compare each with the link: 1 Gbit/s is 125 MB/s.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { exportStream } from "../src/checkpoint/export.ts";
import { importImage } from "../src/checkpoint/import.ts";
import { captureTree } from "../src/checkpoint/tree.ts";
import { FORMAT_VERSION } from "../src/image/manifest.ts";
import { ChunkStore } from "../src/store/chunk-store.ts";
import { ChunkWorkers } from "../src/store/chunk-workers.ts";
import { ImageCatalogue } from "../src/store/image-catalogue.ts";
import { VERSION } from "../src/version.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MIB = Number(arg("mib", "512"));
const root = fs.mkdtempSync(path.join(arg("dir", os.tmpdir()), "autopod-transfer-cpu-"));
const mbps = (bytes: number, ms: number) => Math.round(bytes / 1e6 / (ms / 1000));

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** CPU time (ms) of this process's main thread alone (the agent's serving thread in a real transfer). */
function mainThreadCpuMs(): number {
  const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function makeImage(): Promise<{ ca: ImageCatalogue; id: string; close(): void }> {
  const pod = path.join(root, "pod");
  fs.mkdirSync(pod);
  const fd = fs.openSync(path.join(pod, "pages-1.img"), "w");
  const block = 16 << 20;
  const b = new Uint8Array(block);
  for (let off = 0; off < MIB * 2 ** 20; off += block) {
    for (let i = 0; i < block; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
    fs.writeSync(fd, b, 0, block, off);
  }
  fs.closeSync(fd);
  const a = ChunkStore.open(path.join(root, "a"), { isDurable: false });
  const ca = new ImageCatalogue(a);
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
  fs.rmSync(pod, { recursive: true });
  return { ca, id, close: () => a.close() };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; cpuMs: number; mainThreadCpuMs: number }> {
  const t = performance.now();
  const c = cpuMs();
  const m = mainThreadCpuMs();
  const value = await fn();
  return { value, ms: performance.now() - t, cpuMs: cpuMs() - c, mainThreadCpuMs: mainThreadCpuMs() - m };
}

const src = await makeImage();
const asPeer = { keepPartial: true, isExpectedNew: true, threads: ChunkWorkers.shared() };
// As pushImage sends it: chunks by index, not hashed again as they are read (the importer verifies each).
const forPeer = { chunkIndexes: true, isVerifiedByReceiver: true };
try {
  const pieces: Uint8Array[] = [];
  const exp = await timed(async () => {
    let n = 0;
    for await (const p of exportStream(src.ca, src.id, forPeer)) {
      pieces.push(p);
      n += p.byteLength;
    }
    return n;
  });
  const fresh = (name: string) => {
    const s = ChunkStore.open(path.join(root, name), { isDurable: true });
    return { s, c: new ImageCatalogue(s) };
  };
  const b = fresh("b");
  const imp = await timed(() =>
    importImage(
      b.c,
      (async function* () {
        yield* pieces;
      })(),
      asPeer,
    ),
  );
  b.s.close();
  pieces.length = 0;
  const c = fresh("c");
  const both = await timed(() => importImage(c.c, exportStream(src.ca, src.id, forPeer), asPeer));
  c.s.close();
  const bytes = exp.value;
  console.log(
    JSON.stringify(
      {
        mib: MIB,
        exportBytes: bytes,
        export: { MBps: mbps(bytes, exp.ms), ms: Math.round(exp.ms), cpuMs: Math.round(exp.cpuMs), mainThreadCpuMs: exp.mainThreadCpuMs },
        import: { MBps: mbps(bytes, imp.ms), ms: Math.round(imp.ms), cpuMs: Math.round(imp.cpuMs), mainThreadCpuMs: imp.mainThreadCpuMs },
        exportIntoImport: { MBps: mbps(bytes, both.ms), ms: Math.round(both.ms), cpuMs: Math.round(both.cpuMs), mainThreadCpuMs: both.mainThreadCpuMs },
        loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
      },
      null,
      2,
    ),
  );
} finally {
  src.close();
  fs.rmSync(root, { recursive: true, force: true });
}
