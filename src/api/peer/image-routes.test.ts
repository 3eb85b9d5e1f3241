import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Hono } from "hono";
import type { Cluster } from "../../cluster/cluster.ts";
import { exportStream } from "../../checkpoint/export.ts";
import type { ImportResult } from "../../checkpoint/import.ts";
import { captureTree } from "../../checkpoint/tree.ts";
import { randomBytes, sampleManifest } from "../../image/testing.ts";
import { createLogger } from "../../log.ts";
import { ChunkStore } from "../../store/chunk-store.ts";
import { ImageCatalogue } from "../../store/image-catalogue.ts";
import { type PeerImageClient, pushImage } from "../../transfer/push.ts";
import type { ImageTrust } from "../../trust/image-trust.ts";
import { createPeerApp } from "./app.ts";

let tmp: string;
let src: { store: ChunkStore; cat: ImageCatalogue };
let dst: { store: ChunkStore; cat: ImageCatalogue };
let app: Hono;
/** Bytes of "which do you lack?" questions the peer was asked. */
let askedBytes = 0;
const trust = { admitImport: async () => () => {}, signatureOf: () => null } as unknown as ImageTrust;

function open(name: string) {
  const store = ChunkStore.open(path.join(tmp, name), { isDurable: false });
  return { store, cat: new ImageCatalogue(store) };
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "peer-images-"));
  src = open("src");
  dst = open("dst");
  app = createPeerApp({
    cluster: {} as Cluster,
    images: { catalogue: dst.cat, trust },
    info: async () => {
      throw new Error("not asked");
    },
    pods: () => ({ host: "b", pods: [] }),
    log: createLogger({ level: "error", write: () => {} }),
  });
});
afterEach(() => {
  src.store.close();
  dst.store.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A checkpoint of pod "web" on src: a 2 MiB page image (changed pages of the previous one, when given). */
async function checkpoint(previous?: { id: string; pages: Uint8Array }, change = 5): Promise<{ id: string; pages: Uint8Array }> {
  const dir = path.join(tmp, `pod-${Math.random().toString(36).slice(2)}`);
  fs.mkdirSync(dir);
  const pages = previous ? previous.pages.slice() : randomBytes(512 * 4096);
  for (let k = 0; k < (previous ? change : 0); k++) pages.set(randomBytes(4096), Math.floor(Math.random() * 512) * 4096);
  fs.writeFileSync(path.join(dir, "pages-1.img"), pages);
  const w = src.store.writer();
  const cap = await captureTree(dir, w);
  const id = src.cat.addManifest(sampleManifest({ criu: cap.entries, parent: previous?.id ?? null, createdAt: new Date().toISOString() }), w);
  w.close();
  return { id, pages };
}

/** The peer API in process, as pushImage sees a peer. */
function peer(): PeerImageClient {
  const call = async (p: string, init: RequestInit): Promise<Response> => {
    const res = await app.request(p, init);
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    return res;
  };
  return {
    name: "b",
    missing: async (hashes) => {
      askedBytes += hashes.byteLength;
      return new Uint8Array(await (await call("/v1/chunks/missing", { method: "POST", body: hashes })).arrayBuffer());
    },
    heldImages: async (ids) => ((await (await call("/v1/images/held", { method: "POST", body: JSON.stringify({ ids }) })).json()) as { held: string[] }).held,
    importImage: async (stream) =>
      ((await (await call("/v1/images/import", { method: "POST", body: stream, duplex: "half" } as RequestInit)).json()) as { import: ImportResult }).import,
    manifest: async () => {
      throw new Error("not asked");
    },
    exportImage: async () => {
      throw new Error("not asked");
    },
  };
}

function snapshot(s: { store: ChunkStore; cat: ImageCatalogue }) {
  return { stats: s.store.stats(), images: s.cat.list().map((i) => i.id), packs: fs.readdirSync(path.join(s.store.dir, "packs")).sort() };
}

describe("pushing the next image of a pod", () => {
  test("its manifest travels as a delta against the image the peer holds: little more than the changed pages", async () => {
    const first = await checkpoint();
    const r1 = await pushImage(src.cat, trust, peer(), first.id);
    expect(r1.chunksSent).toBe(512);
    // The first push carries the whole manifest (16 KiB of page hashes).
    expect(r1.wireBytes).toBeGreaterThan(512 * 4096 + 512 * 32);
    const second = await checkpoint(first, 5);
    askedBytes = 0;
    const r2 = await pushImage(src.cat, trust, peer(), second.id);
    // Only the chunks the peer's copy of the parent lacks are asked about, not the 512 of the image.
    expect(askedBytes).toBeGreaterThan(0);
    expect(askedBytes).toBeLessThanOrEqual(5 * 32);
    expect(dst.cat.manifestBytes(second.id)).toEqual(src.cat.manifestBytes(second.id));
    const changed = r2.bytesSent;
    expect(r2.chunksSent).toBeGreaterThan(0);
    expect(r2.chunksSent).toBeLessThanOrEqual(5);
    // A whole manifest alone would be 16 KiB of hashes: the delta is a few of them.
    expect(r2.wireBytes - changed).toBeLessThan(700);
    // A third, against the second (its parent), which the peer now holds.
    const third = await checkpoint(second, 1);
    const r3 = await pushImage(src.cat, trust, peer(), third.id);
    expect(r3.wireBytes - r3.bytesSent).toBeLessThan(500);
    expect(dst.cat.has(third.id)).toBe(true);
  });

  test("a peer without the parent gets the whole manifest", async () => {
    const first = await checkpoint();
    const second = await checkpoint(first, 5);
    const r = await pushImage(src.cat, trust, peer(), second.id);
    expect(r.wireBytes).toBeGreaterThan(512 * 4096 + 512 * 32);
    expect(dst.cat.manifestBytes(second.id)).toEqual(src.cat.manifestBytes(second.id));
  });
});

describe("hostile peer input to the image routes", () => {
  test("held: only image ids, at most 64 of them, in a small JSON body", async () => {
    const first = await checkpoint();
    await pushImage(src.cat, trust, peer(), first.id);
    const ask = (body: string) => app.request("/v1/images/held", { method: "POST", body });
    expect(await (await ask(JSON.stringify({ ids: [first.id, "a".repeat(64)] }))).json()).toEqual({ held: [first.id] });
    for (const body of [
      JSON.stringify({ ids: ["../../etc/passwd"] }),
      JSON.stringify({ ids: new Array(65).fill(first.id) }),
      JSON.stringify({ ids: [first.id], more: 1 }),
      "{not json",
      JSON.stringify({ ids: ["a".repeat(64)], pad: "x".repeat(20_000) }),
    ]) {
      const res = await ask(body);
      expect(res.status).toBe(400);
    }
  });

  test("an import whose manifest delta names a parent this host lacks, or is hostile, is refused with the store unchanged and the agent answering", async () => {
    const first = await checkpoint();
    const second = await checkpoint(first, 5);
    const parentBytes = src.cat.manifestBytes(first.id);
    const exportOf = async () =>
      new Uint8Array(
        await new Response(
          exportStream(src.cat, second.id, { manifestParent: { id: first.id, manifestBytes: parentBytes }, chunkIndexes: true }),
        ).arrayBuffer(),
      );
    dst.store.put(randomBytes(100));
    const before = snapshot(dst);
    const post = (body: Uint8Array) => app.request("/v1/images/import", { method: "POST", body });
    // dst does not hold the parent.
    const missing = await post(await exportOf());
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toContain(
      `delta against image ${first.id}, which this host does not have`,
    );
    expect(snapshot(dst)).toEqual(before);

    // With the parent: a delta that copies past the parent's end, and one that rebuilds another manifest.
    await pushImage(src.cat, trust, peer(), first.id);
    const withParent = snapshot(dst);
    const good = await exportOf();
    const dlen = new DataView(good.buffer).getUint32(16);
    const at = 16 + 4 + 64;
    const swap = (delta: number[]) => {
      const out = new Uint8Array(good.byteLength - dlen + delta.length);
      out.set(good.subarray(0, at));
      new DataView(out.buffer).setUint32(16, delta.length);
      out.set(delta, at);
      out.set(good.subarray(at + dlen), at + delta.length);
      return out;
    };
    const len = new DataView(good.buffer).getUint32(at);
    const u32 = [len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255];
    for (const [body, message] of [
      [swap([...u32, 0x01, 0xff, 0xff, 0xff, 0x7f, 0x10]), "a copy of bytes"],
      [swap([0, 0, 0, 4, 0x01, 0, 4]), "does not match its hash"],
      [swap([0x7f, 0xff, 0xff, 0xff]), "over the manifest limit"],
    ] as const) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(message);
      expect(snapshot(dst)).toEqual(withParent);
    }
    // Still answering; the real delta goes in.
    const ok = await post(good);
    expect(ok.status).toBe(201);
    expect(dst.cat.manifestBytes(second.id)).toEqual(src.cat.manifestBytes(second.id));
  });
});
