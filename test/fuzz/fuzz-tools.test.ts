/** The fuzzer's own tools: the protobuf walker, CRIU image framing, and rebuilding exports with true hashes. */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sampleManifest } from "../../src/image/testing.ts";
import { importImage } from "../../src/checkpoint/import.ts";
import { InvalidManifestError } from "../../src/image/manifest.ts";
import { ChunkStore } from "../../src/store/chunk-store.ts";
import { ImageCatalogue } from "../../src/store/image-catalogue.ts";
import { encodeCriuImage, mutateCriuFile, parseCriuImage } from "./criu-image.ts";
import { type ExportModel, fileBytes, layoutOf, parseExport, type RawEntry, serialize, setFileBytes } from "./export-file.ts";
import { minimize } from "./minimize.ts";
import { type FuzzTargets, mutant } from "./mutate.ts";
import { concatBytes, encodeMessage, encodeVarint, INTERESTING_INTS, parseMessage, readVarint } from "./protobuf.ts";
import { Rng } from "./rng.ts";

/** field 1 varint 150, field 2 string "/bin/sh", field 3 a nested {1: 1, 2: fixed32}, field 4 fixed64. */
const MESSAGE = Uint8Array.from([
  0x08,
  0x96,
  0x01,
  0x12,
  0x07,
  ...new TextEncoder().encode("/bin/sh"),
  0x1a,
  0x07,
  0x08,
  0x01,
  0x15,
  0x01,
  0x02,
  0x03,
  0x04,
  0x21,
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
]);

describe("protobuf walker", () => {
  test("varints round trip at every width edge", () => {
    for (const v of INTERESTING_INTS) {
      const b = encodeVarint(v);
      expect(readVarint(b, 0)).toEqual({ value: v, next: b.byteLength });
    }
    expect(readVarint(Uint8Array.from([0x80, 0x80]), 0)).toBeNull();
  });

  test("a message parses into fields, nested ones too, and encodes back to the same bytes", () => {
    const f = parseMessage(MESSAGE)!;
    expect(f.map((x) => [x.num, x.wire])).toEqual([
      [1, 0],
      [2, 2],
      [3, 2],
      [4, 1],
    ]);
    expect(f[0]!.int).toBe(150n);
    expect(new TextDecoder().decode(f[1]!.bytes)).toBe("/bin/sh");
    expect(f[1]!.children).toBeUndefined();
    expect(f[2]!.children!.map((x) => x.num)).toEqual([1, 2]);
    expect(encodeMessage(f)).toEqual(MESSAGE);
  });

  test("bytes that are not a message are refused, not half-parsed", () => {
    expect(parseMessage(MESSAGE.subarray(0, MESSAGE.byteLength - 1))).toBeNull();
    expect(parseMessage(Uint8Array.from([0x0b]))).toBeNull(); // a group
    expect(parseMessage(Uint8Array.from([0x12, 0x05, 0x01]))).toBeNull(); // a length past the end
  });

  test("a length that lies is written as it is told", () => {
    const f = parseMessage(MESSAGE)!;
    f[2]!.lenDelta = 3;
    const b = encodeMessage(f);
    expect(b.byteLength).toBe(MESSAGE.byteLength);
    expect(parseMessage(b)).toBeNull();
  });
});

describe("CRIU image framing", () => {
  const header = Uint8Array.from([0x19, 0x43, 0x56, 0x54, 0x47, 0x38, 0x05, 0x55]);
  const size = (n: number) => Uint8Array.from([n, 0, 0, 0]);
  const img = concatBytes([header, size(MESSAGE.byteLength), MESSAGE, size(2), Uint8Array.from([0x08, 0x05]), Uint8Array.from([0xde, 0xad])]);

  test("magic, entries and a raw tail; encoding gives the file back", () => {
    const p = parseCriuImage(img)!;
    expect(p.header).toEqual(header);
    expect(p.entries.length).toBe(2);
    expect(p.tail).toEqual(Uint8Array.from([0xde, 0xad]));
    expect(encodeCriuImage(p)).toEqual(img);
  });

  test("a file without CRIU's magic is raw", () => {
    expect(parseCriuImage(Uint8Array.from([0x1f, 0x8b, 8, 0, 0]))).toBeNull();
  });

  test("mutations change the file and are named", () => {
    const rng = new Rng(7);
    const strings = ["x"];
    for (let i = 0; i < 200; i++) {
      const r = mutateCriuFile(img, rng, strings);
      expect(r.what.length).toBeGreaterThan(0);
    }
  });
});

describe("exports rebuilt with true hashes", () => {
  let tmp: string;
  let store: ChunkStore;
  let cat: ImageCatalogue;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fuzz-tools-"));
    store = ChunkStore.open(path.join(tmp, "store"), { isDurable: false });
    cat = new ImageCatalogue(store);
  });
  afterEach(() => {
    store.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function model(): ExportModel {
    const base = { mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 0, chunkSize: 65536, chunks: new Uint8Array() };
    const m: ExportModel = {
      manifest: sampleManifest({
        criu: [
          { ...base, path: ".", type: "dir", mode: 0o755, chunkSize: 0 },
          { ...base, path: "core-1.img", type: "file" },
        ],
      }) as unknown as Record<string, unknown>,
      chunks: new Map(),
    };
    const core = (m.manifest.criu as RawEntry[])[1]!;
    setFileBytes(m, core, concatBytes([Uint8Array.from([0x19, 0x43, 0x56, 0x54, 1, 2, 3, 4]), Uint8Array.from([MESSAGE.byteLength, 0, 0, 0]), MESSAGE]));
    return m;
  }

  async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
    yield b;
  }

  test("an edited CRIU file imports: its chunks, the image id and the final hash are recomputed", async () => {
    const m = model();
    const core = (m.manifest.criu as RawEntry[])[1]!;
    const bytes = fileBytes(m, core);
    bytes[bytes.byteLength - 1]! ^= 0xff;
    setFileBytes(m, core, bytes);
    const r = await importImage(cat, once(serialize(layoutOf(m))));
    expect(cat.has(r.id)).toBe(true);
    expect(r.newChunks).toBe(1);
  });

  test("an edited manifest gets past the hashes to the manifest's validation", async () => {
    const m = model();
    (m.manifest.criu as RawEntry[])[1]!.path = "../escape";
    const err = await importImage(cat, once(serialize(layoutOf(m)))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidManifestError);
    expect(String((err as Error).message)).toContain('"../escape"');
  });

  test("the minimizer drops every entry the finding does not need", async () => {
    const m = model();
    const list = m.manifest.criu as RawEntry[];
    for (let i = 0; i < 40; i++) list.push({ ...list[1]!, path: `pad-${i}.img` });
    list.push({ ...list[1]!, path: "a/../../escape" });
    const finds = async (b: Uint8Array) => {
      const e = await importImage(cat, once(b)).catch((x: unknown) => x as Error);
      return e instanceof InvalidManifestError && e.message.includes("escape");
    };
    const big = serialize(layoutOf(m));
    expect(await finds(big)).toBe(true);
    const small = await minimize(big, finds);
    expect(await finds(small)).toBe(true);
    expect(parseExport(small).manifest.criu as RawEntry[]).toHaveLength(2); // the root and the bad entry
  }, 60_000);

  test("mutants of a valid export are refused with domain errors or import", async () => {
    const seed = model();
    const rng = new Rng(11);
    const t: FuzzTargets = { canary: path.join(tmp, "canary"), localPods: ["victim"] };
    let imported = 0;
    for (let i = 0; i < 150; i++) {
      const mu = mutant(seed, rng.fork(), t);
      try {
        const r = await importImage(cat, once(mu.bytes));
        cat.remove(r.id);
        imported++;
      } catch (e) {
        expect({ name: (e as Error).name, ops: mu.ops, isDomain: (e as { code?: unknown }).code !== undefined }).toMatchObject({ isDomain: true });
      }
    }
    expect(imported).toBeGreaterThan(5);
  }, 60_000);
});

describe("mutation descriptions", () => {
  test("name values of any type, big integers inside objects too", () => {
    const rng = new Rng(3);
    const t: FuzzTargets = { canary: "/tmp/canary", localPods: [] };
    const seed: ExportModel = {
      manifest: {
        ...(sampleManifest() as unknown as Record<string, unknown>),
        pod: { name: "web", command: ["sh"], volumes: [{ host: "/a", pod: "/b", readonly: 1n << 63n }] },
      },
      chunks: new Map(),
    };
    for (let i = 0; i < 2000; i++) expect(() => mutant(seed, rng.fork(), t)).not.toThrow();
  });
});

describe("mutations of mutated manifests", () => {
  test("a tree whose entries an earlier mutation made strings is mutated without throwing", () => {
    const rng = new Rng(9);
    const t: FuzzTargets = { canary: "/tmp/canary", localPods: [] };
    const seed: ExportModel = { manifest: { ...(sampleManifest() as unknown as Record<string, unknown>), rootfs: ["x", "y", 3] }, chunks: new Map() };
    for (let i = 0; i < 3000; i++) expect(() => mutant(seed, rng.fork(), t)).not.toThrow();
  });
});
