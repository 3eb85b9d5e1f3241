import { expect, test } from "bun:test";
import { HASH_BYTES } from "../image/hash.ts";
import { bitIsSet, bitmapOf } from "./bitmap.ts";
import { askInBatches, type PeerImageHolder } from "./manifest-parent.ts";

/** A peer lacking the chunks whose hash's first byte is odd, refusing questions over `limit` hashes. */
function peerWithLimit(limit: number, asked: number[]): PeerImageHolder {
  return {
    heldImages: async () => [],
    missing: async (hashes) => {
      const n = hashes.byteLength / HASH_BYTES;
      if (n > limit) throw new Error(`At most ${limit} hashes per question`);
      asked.push(n);
      return bitmapOf(n, (i) => (hashes[i * HASH_BYTES]! & 1) === 1);
    },
  };
}

function hashesOf(n: number): Uint8Array {
  const all = new Uint8Array(n * HASH_BYTES);
  for (let i = 0; i < n; i++) all[i * HASH_BYTES] = (i * 7) % 256;
  return all;
}

test("a question longer than the peer's limit goes in batches, and the answers join into one bitmap", async () => {
  const asked: number[] = [];
  const n = 8 * 5 + 3; // not a multiple of the batch: the last batch is short, and not whole bytes
  const lacking = await askInBatches(peerWithLimit(16, asked), hashesOf(n), 16);
  expect(asked).toEqual([16, 16, 11]);
  expect(lacking.byteLength).toBe(Math.ceil(n / 8));
  for (let i = 0; i < n; i++) expect(bitIsSet(lacking, i)).toBe(((i * 7) % 256) % 2 === 1);
});

test("a short question is asked once; a batch that is not whole bitmap bytes is refused", async () => {
  const asked: number[] = [];
  await askInBatches(peerWithLimit(16, asked), hashesOf(10), 16);
  expect(asked).toEqual([10]);
  await expect(askInBatches(peerWithLimit(16, asked), hashesOf(40), 12)).rejects.toThrow("whole number of bitmap bytes");
});

test("a peer answering a bitmap of the wrong size is refused", async () => {
  const bad: PeerImageHolder = { heldImages: async () => [], missing: async () => new Uint8Array(1) };
  await expect(askInBatches(bad, hashesOf(40), 16)).rejects.toThrow("wrong size");
});
