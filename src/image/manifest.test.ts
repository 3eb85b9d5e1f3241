import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { ZERO_HASH, sha256 } from "./hash.ts";
import {
  type FileEntry,
  InvalidManifestError,
  LIMITS,
  UnsupportedFormatError,
  decodeManifest,
  encodeManifest,
  imageIdOf,
  logicalBytes,
  pathProblem,
  uniqueChunkRefs,
} from "./manifest.ts";
import { sampleManifest } from "./testing.ts";

const packr = new Packr({ useRecords: false, moreTypes: false });
const h1 = sha256(new Uint8Array([1]));
const h2 = sha256(new Uint8Array([2]));

function file(path: string, size: number, hashes: Uint8Array[], chunkSize = 4096): FileEntry {
  const chunks = new Uint8Array(hashes.length * 32);
  hashes.forEach((h, i) => {
    chunks.set(h, i * 32);
  });
  return { path, type: "file", mode: 0o644, uid: 0, gid: 0, mtimeMs: 1.5, size, chunkSize, chunks };
}

describe("manifest", () => {
  test("encodes, decodes and names chunks in first-use order, skipping zero pages", () => {
    const m = sampleManifest({
      criu: [file("pages-1.img", 3 * 4096, [h1, ZERO_HASH, h2])],
      rootfs: [{ path: ".", type: "dir", mode: 0o755, uid: 0, gid: 0, mtimeMs: 0, size: 0, chunkSize: 0, chunks: new Uint8Array(0) }, file("a", 10, [h2])],
      volumes: [{ path: "/data", entries: [file("x", 4097, [h1, h1])] }],
    });
    const bytes = encodeManifest(m);
    const back = decodeManifest(bytes);
    expect(back.pod.name).toBe("web");
    expect(back.criu[0]!.chunks).toEqual(m.criu[0]!.chunks);
    expect(logicalBytes(back)).toBe(3 * 4096 + 10 + 4097);
    expect(uniqueChunkRefs(back).map((r) => [r.tree, r.path, r.length])).toEqual([
      ["criu", "pages-1.img", 4096],
      ["criu", "pages-1.img", 4096],
    ]);
    expect(imageIdOf(bytes)).toMatch(/^[0-9a-f]{64}$/);
    expect(imageIdOf(encodeManifest(back))).toBe(imageIdOf(bytes));
  });

  test("an unknown format version is refused by name", () => {
    const raw = { ...sampleManifest(), format: 2 };
    expect(() => decodeManifest(packr.pack(raw))).toThrow(UnsupportedFormatError);
    expect(() => decodeManifest(packr.pack(raw))).toThrow("Unsupported manifest format version 2: this autopod reads version 1");
  });

  test("garbage and flipped bits fail clearly or change the id", () => {
    expect(() => decodeManifest(new Uint8Array([0xc1, 1, 2]))).toThrow(InvalidManifestError);
    const bytes = encodeManifest(sampleManifest({ rootfs: [file("a", 10, [h2])] }));
    const id = imageIdOf(bytes);
    for (let bit = 0; bit < bytes.byteLength * 8; bit += 7) {
      const copy = bytes.slice();
      copy[bit >> 3]! ^= 1 << (bit & 7);
      expect(imageIdOf(copy)).not.toBe(id);
      try {
        decodeManifest(copy);
      } catch (e) {
        expect(e instanceof InvalidManifestError || e instanceof UnsupportedFormatError).toBe(true);
      }
    }
  });

  const hostile: Array<[string, Record<string, unknown>, string]> = [
    ["absurd size", { rootfs: [file("a", 2 ** 50, [])] }, "rootfs.0.size"],
    ["size not matching chunks", { rootfs: [file("a", 5000, [h1])] }, "size 5000 needs 2 chunks of 4096 bytes but 1 are listed"],
    ["chunk size not a power of two", { rootfs: [file("a", 5000, [h1], 5000)] }, "not a power of two"],
    ["ragged chunk list", { rootfs: [{ ...file("a", 10, [h1]), chunks: new Uint8Array(31) }] }, "needs 1 chunks"],
    ["dot-dot", { criu: [file("../x", 0, [])] }, 'criu entry "../x": unsafe path'],
    ["absolute", { rootfs: [file("/etc/shadow", 0, [])] }, "it is absolute"],
    ["volume not absolute", { volumes: [{ path: "data", entries: [] }] }, 'volume path "data" must be absolute'],
    ["volume dot-dot", { volumes: [{ path: "/a/../b", entries: [] }] }, "must be absolute and normalized"],
    ["too many cpu flags", { cpuFlags: Array(LIMITS.cpuFlags + 1).fill("x") }, "cpuFlags"],
    ["bad parent", { parent: "zz" }, "parent"],
    ["unknown key", { extra: 1 }, "extra"],
    ["missing pod name", { pod: { command: [] } }, "pod.name"],
  ];
  for (const [name, over, message] of hostile) {
    test(`rejects: ${name}`, () => {
      const raw = { ...sampleManifest(), ...over };
      expect(() => decodeManifest(packr.pack(raw))).toThrow(message);
      expect(() => decodeManifest(packr.pack(raw))).toThrow(InvalidManifestError);
    });
  }

  test("path rules", () => {
    expect(pathProblem("a/b.c")).toBeUndefined();
    expect(pathProblem(".")).toBeUndefined();
    expect(pathProblem("..a/b..")).toBeUndefined();
    for (const p of ["", "/a", "a/../b", "..", "a//b", "a/", "./a", "a/./b", "a\0b", "x".repeat(256)]) {
      expect(pathProblem(p)).toBeString();
    }
  });

  test("the pod spec is loose: extra keys pass through", () => {
    const m = sampleManifest({ pod: { name: "w", command: [], future: { x: 1 } } as never });
    expect((decodeManifest(encodeManifest(m)).pod as Record<string, unknown>).future).toEqual({ x: 1 });
  });
});
