import { expect, test } from "bun:test";
import { bitIsSet, bitmapOf, countBits, hashViews } from "./bitmap.ts";

test("a bitmap marks exactly the chosen indexes, LSB first", () => {
  const b = bitmapOf(19, (i) => i % 3 === 0);
  expect(b.byteLength).toBe(3);
  expect(b[0]).toBe(0b01001001);
  for (let i = 0; i < 19; i++) expect(bitIsSet(b, i)).toBe(i % 3 === 0);
  expect(countBits(b)).toBe(7);
  expect(countBits(bitmapOf(0, () => true))).toBe(0);
});

test("hash views split without copying", () => {
  const all = new Uint8Array(96).map((_, i) => i);
  const v = hashViews(all);
  expect(v.length).toBe(3);
  expect(v[2]![0]).toBe(64);
  expect(v[1]!.buffer).toBe(all.buffer);
});
