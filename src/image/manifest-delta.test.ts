import { describe, expect, test } from "bun:test";
import { applyManifestDelta, encodeManifestDelta, InvalidManifestDeltaError } from "./manifest-delta.ts";
import { HASH_BYTES } from "./hash.ts";
import { LIMITS } from "./manifest.ts";

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A delta by hand: u32 length, then ops. */
function handDelta(length: number, ...ops: number[][]): Uint8Array {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, length);
  return concat(head, ...ops.map((o) => Uint8Array.from(o)));
}

describe("manifest deltas", () => {
  test("a hash list with 1% of its hashes replaced: the delta is about those hashes, and rebuilds the exact bytes", () => {
    const pages = 32_768;
    const parent = concat(random(3000), random(pages * HASH_BYTES), random(500));
    const target = parent.slice();
    const changed = new Set<number>();
    while (changed.size < pages / 100) changed.add(Math.floor(Math.random() * pages));
    for (const i of changed) target.set(random(HASH_BYTES), 3000 + i * HASH_BYTES);
    const delta = encodeManifestDelta(parent, target);
    expect(applyManifestDelta(parent, delta)).toEqual(target);
    // 327 hashes of 32 bytes, and a few bytes of ops each.
    expect(delta.byteLength).toBeLessThan(changed.size * (HASH_BYTES + 12));
    expect(delta.byteLength).toBeGreaterThan(changed.size * HASH_BYTES);
  });

  test("insertions, removals and a shifted tail rebuild exactly", () => {
    const parent = random(200_000);
    const target = concat(random(17), parent.subarray(0, 50_000), random(1000), parent.subarray(50_033, 150_000), parent.subarray(10_000, 20_000), random(3));
    const delta = encodeManifestDelta(parent, target);
    expect(applyManifestDelta(parent, delta)).toEqual(target);
    expect(delta.byteLength).toBeLessThan(2000);
  });

  test("edge cases: empty target, empty parent, unrelated bytes, runs of one byte", () => {
    const cases: Array<[Uint8Array, Uint8Array]> = [
      [random(100), new Uint8Array(0)],
      [new Uint8Array(0), random(100)],
      [random(5000), random(5000)],
      [new Uint8Array(4096), new Uint8Array(100_000)],
      [random(31), random(33)],
    ];
    for (const [p, t] of cases) expect(applyManifestDelta(p, encodeManifestDelta(p, t))).toEqual(t);
  });

  test("hostile deltas are refused, naming what is wrong", () => {
    const parent = random(1000);
    const refuse = (delta: Uint8Array, message: string) => {
      expect(() => applyManifestDelta(parent, delta)).toThrow(InvalidManifestDeltaError);
      expect(() => applyManifestDelta(parent, delta)).toThrow(message);
    };
    // A copy past the parent's end, or starting beyond it.
    refuse(handDelta(100, [0x01, 0xe8, 0x07, 100]), "a copy of bytes 1000 to 1100 of a parent of 1000");
    refuse(handDelta(100, [0x01, 0xe7, 0x07, 2]), "a copy of bytes 999 to 1001");
    // An op longer than what is left of the declared length, and empty ops.
    refuse(handDelta(10, [0x01, 0, 11]), "a copy of 11 bytes at byte 0 of 10");
    refuse(handDelta(10, [0x02, 11, ...new Array(11).fill(7)]), "an add of 11 bytes at byte 0 of 10");
    refuse(handDelta(10, [0x01, 0, 0]), "a copy of 0 bytes");
    // An absurd length: refused before anything is allocated.
    refuse(handDelta(LIMITS.manifestBytes + 1), `over the manifest limit of ${LIMITS.manifestBytes}`);
    refuse(handDelta(0xffff_ffff, [0x01, 0, 1]), "over the manifest limit");
    // Cut short, in an op, a varint or an add's bytes; bytes after the end; an unknown op; a runaway varint.
    refuse(handDelta(10), "it ends inside an op");
    refuse(handDelta(10, [0x01, 0x80]), "it ends inside a copy's offset");
    refuse(handDelta(10, [0x02, 5, 1, 2]), "it ends inside an add's bytes");
    refuse(handDelta(2, [0x01, 0, 2], [0x02, 1, 9]), "3 bytes follow the last op");
    refuse(handDelta(2, [0x07]), "unknown op 7 at byte 4");
    refuse(handDelta(2, [0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1]), "a copy's offset is longer than 5 bytes");
    refuse(new Uint8Array([0, 0]), "it ends inside the rebuilt length");
    // The control: a well-formed delta by hand.
    expect(applyManifestDelta(parent, handDelta(4, [0x01, 10, 2], [0x02, 2, 7, 8]))).toEqual(Uint8Array.from([parent[10]!, parent[11]!, 7, 8]));
  });
});
