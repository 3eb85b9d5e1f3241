import { afterEach, expect, test } from "bun:test";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkCriuImage, expectedPodOf } from "./check.ts";
import { IMG_COMMON_MAGIC, MAGIC } from "./image-file.ts";
import { checkPagemap } from "./pagemap.ts";

/** A varint field (wire type 0). */
const varint = (n: number, v: bigint): number[] => {
  const out = [n << 3];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
};
/** A pagemap file as CRIU 4 writes it: the head, then entries with nr_pages in field 5 and 0 in field 2. */
function pagemap(pagesId: number, entries: Array<[bigint, number, number?]>): Uint8Array {
  const msgs = [
    varint(1, BigInt(pagesId)),
    ...entries.map(([vaddr, n, flags]) => [...varint(1, vaddr), ...varint(2, 0n), ...varint(4, BigInt(flags ?? 4)), ...varint(5, BigInt(n))]),
  ];
  const out: number[] = [];
  const u32 = (x: number) => out.push(x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24);
  u32(IMG_COMMON_MAGIC);
  u32(MAGIC.pagemap);
  for (const m of msgs) {
    u32(m.length);
    out.push(...m);
  }
  return new Uint8Array(out);
}
const refusal = (entries: Array<[bigint, number, number?]>): string => {
  try {
    checkPagemap("pagemap-1.img", pagemap(1, entries));
    return "accepted";
  } catch (e) {
    return (e as Error).message;
  }
};

test("CRIU 4's pagemap entries are read and counted (nr_pages in field 5, lazy pages present too)", () => {
  expect(
    checkPagemap(
      "pagemap-1.img",
      pagemap(3, [
        [0x401000n, 1],
        [0x5e0000n, 5, 6],
        [0x7ffd0000n, 2],
      ]),
    ),
  ).toEqual({ pagesFile: "pages-3.img", pages: 8 });
});

test("an entry whose vaddr is not page-aligned is refused (fuzz finding P1: CRIU's restorer looped on it for good)", () => {
  expect(
    refusal([
      [0x401000n, 1],
      [0x5dffffn, 5],
    ]),
  ).toBe("pagemap-1.img entry 2 (vaddr 0x5dffff, 5 pages) is not page-aligned");
});

test("entries of no page, out of order, overlapping, past the address space or in a parent image are refused", () => {
  expect(refusal([[0x401000n, 0]])).toBe("pagemap-1.img entry 1 (vaddr 0x401000, 0 pages) covers no page");
  expect(
    refusal([
      [0x500000n, 1],
      [0x401000n, 1],
    ]),
  ).toMatch(/^pagemap-1\.img entry 2 \(vaddr 0x401000, 1 pages\) overlaps or comes before the entry ahead of it \(which ends at 0x501000\)$/);
  expect(
    refusal([
      [0x401000n, 2],
      [0x402000n, 1],
    ]),
  ).toMatch(/entry 2 .* overlaps/);
  expect(refusal([[0xffff_ffff_f000n << 12n, 1]])).toMatch(/ends past the user address space$/);
  expect(refusal([[0x401000n, 1, 1]])).toMatch(/has flags 0x1; autopod's images hold every page themselves/);
  expect(refusal([[0x401000n, 1, 2]])).toMatch(/has flags 0x2/);
});

test("a post-copy image's lazy-only entries pass only when the restore is post-copy, and hold no page of the file", () => {
  const map = pagemap(1, [
    [0x401000n, 2],
    [0x600000n, 256, 2],
  ]);
  expect(() => checkPagemap("pagemap-1.img", map)).toThrow(/entry 2 .* has flags 0x2/);
  expect(checkPagemap("pagemap-1.img", map, true)).toEqual({ pagesFile: "pages-1.img", pages: 2 });
  // Still refused: in a parent image, lazy and in a parent, overlapping.
  expect(() => checkPagemap("pagemap-1.img", pagemap(1, [[0x401000n, 1, 1]]), true)).toThrow(/has flags 0x1/);
  expect(() => checkPagemap("pagemap-1.img", pagemap(1, [[0x401000n, 1, 3]]), true)).toThrow(/has flags 0x3/);
  expect(() =>
    checkPagemap(
      "pagemap-1.img",
      pagemap(1, [
        [0x401000n, 4, 2],
        [0x402000n, 1],
      ]),
      true,
    ),
  ).toThrow(/overlaps/);
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
/** The real image of check.test.ts with a pagemap of `pages` pages and a pages file of `bytes` bytes. */
function imageWith(pages: number, bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), "criu-pagemap-"));
  dirs.push(dir);
  cpSync(join(import.meta.dir, "testdata"), dir, { recursive: true });
  writeFileSync(join(dir, "pagemap-1.img"), pagemap(1, [[0x401000n, pages]]));
  writeFileSync(join(dir, "pages-1.img"), new Uint8Array(bytes));
  return dir;
}
const POD = expectedPodOf({ volumes: [{ host: "/srv/vol", pod: "/data", readonly: false }], rootKind: "overlay" });
const ID = "3f2a".repeat(16);

test("the image check reads every pagemap, and the pages it claims must be exactly the pages file", () => {
  expect(checkCriuImage(ID, imageWith(3, 3 * 4096), POD).threads).toBe(1);
  expect(() => checkCriuImage(ID, imageWith(3, 2 * 4096), POD)).toThrow(
    "Image 3f2a3f2a3f2a… refused: pagemap-1.img lists 3 pages (12288 bytes) in pages-1.img, which is 8192 bytes",
  );
  expect(() => checkCriuImage(ID, imageWith(3, 4 * 4096), POD)).toThrow(/which is 16384 bytes$/);
  const dir = imageWith(1, 4096);
  writeFileSync(join(dir, "pagemap-1.img"), pagemap(1, [[0x401001n, 1]]));
  expect(() => checkCriuImage(ID, dir, POD)).toThrow(/pagemap-1\.img entry 1 \(vaddr 0x401001, 1 pages\) is not page-aligned$/);
  writeFileSync(join(dir, "pages-7.img"), new Uint8Array(4096));
  writeFileSync(join(dir, "pagemap-1.img"), pagemap(1, [[0x401000n, 1]]));
  expect(() => checkCriuImage(ID, dir, POD)).toThrow(/pages-7\.img is named by no pagemap$/);
});
