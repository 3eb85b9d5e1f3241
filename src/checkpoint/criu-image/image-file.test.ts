import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { IMG_COMMON_MAGIC, MAGIC, MAX_ENTRY_BYTES, readImageFile } from "./image-file.ts";

const real = (name: string) => new Uint8Array(readFileSync(`${import.meta.dir}/testdata/${name}`));

function image(magics: number[], entries: Uint8Array[], lengths?: number[]): Uint8Array {
  const parts: number[] = [];
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    parts.push(...b);
  };
  for (const m of magics) u32(m);
  entries.forEach((e, i) => {
    u32(lengths?.[i] ?? e.byteLength);
    parts.push(...e);
  });
  return new Uint8Array(parts);
}

test("real files: inventory has one magic, the others the common magic first", () => {
  expect(readImageFile("inventory.img", real("inventory.img"), MAGIC.inventory).entries).toHaveLength(1);
  expect(readImageFile("pstree.img", real("pstree.img"), MAGIC.pstree).entries).toHaveLength(2);
  expect(readImageFile("mountpoints-13.img", real("mountpoints-13.img"), MAGIC.mnts).entries).toHaveLength(12);
});

test("a wrong magic names the file and both magics", () => {
  expect(() => readImageFile("core-1.img", real("pstree.img"), MAGIC.core)).toThrow("core-1.img has magic 0x50273030, not 0x55053847");
});

test("entries that are cut short, too long or absurd are refused", () => {
  const one = new Uint8Array([0x08, 0x01]);
  expect(readImageFile("x.img", image([IMG_COMMON_MAGIC, MAGIC.fs], [one]), MAGIC.fs).entries[0]).toEqual(one);
  expect(() => readImageFile("x.img", image([IMG_COMMON_MAGIC, MAGIC.fs], [one], [3]), MAGIC.fs)).toThrow("entry 1 claims 3 bytes but only 2 are left");
  expect(() => readImageFile("x.img", image([IMG_COMMON_MAGIC, MAGIC.fs], [one], [0xffffffff]), MAGIC.fs)).toThrow(`over the limit of ${MAX_ENTRY_BYTES}`);
  const cut = image([IMG_COMMON_MAGIC, MAGIC.fs], [one]);
  expect(() => readImageFile("x.img", new Uint8Array([...cut, 1, 0]), MAGIC.fs)).toThrow("entry 2 is cut short in its length");
  expect(() => readImageFile("x.img", new Uint8Array([1, 2]), MAGIC.fs)).toThrow("too short");
});
