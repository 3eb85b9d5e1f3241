/**
 * The parent a pushed image's manifest is sent as a delta against: an image
 * of the same pod that the receiver already holds (its previous image, when
 * that was pushed there before). Most of a manifest is page hashes, and the
 * next image of a pod changes only those of the pages that changed.
 */
import { HASH_BYTES } from "../image/hash.ts";
import { HashTable } from "../image/hash-table.ts";
import { MAX_HASHES_PER_QUERY } from "./bitmap.ts";
import { decodeManifest, uniqueChunkRefs } from "../image/manifest.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";

/** The most candidates asked about (the peer API's limit is MAX_HELD_QUESTION). */
const CANDIDATES = 16;

/** What choosing a parent needs of a peer (src/api/peer/client.ts's PeerClient). */
export interface PeerImageHolder {
  /** Which of these images the peer holds. */
  heldImages(ids: string[]): Promise<string[]>;
  /** Which of these hashes (concatenated) the peer lacks: a bitmap, bit set = lacking. */
  missing(hashes: Uint8Array): Promise<Uint8Array>;
}

/**
 * The image (id and exact manifest bytes) the peer holds that the manifest of
 * `id` is best sent against, or null: the whole manifest goes. The manifest's
 * own parent comes first, then the pod's other images, newest first.
 */
export async function manifestParentFor(
  catalogue: ImageCatalogue,
  peer: PeerImageHolder,
  id: string,
  parent: string | null,
): Promise<{ id: string; manifestBytes: Uint8Array } | null> {
  const candidates = [...new Set([...(parent !== null && catalogue.has(parent) ? [parent] : []), ...catalogue.relativesOf(id, CANDIDATES)])]
    .filter((c) => c !== id)
    .slice(0, CANDIDATES);
  if (candidates.length === 0) return null;
  const held = new Set(await peer.heldImages(candidates));
  const chosen = candidates.find((c) => held.has(c) && catalogue.has(c));
  return chosen === undefined ? null : { id: chosen, manifestBytes: catalogue.manifestBytes(chosen) };
}

/**
 * Which of `hashes` (concatenated) the peer lacks, as a bitmap over them. When
 * the peer holds an image (the manifest's parent) it holds every chunk of it,
 * so only the others are asked about: 84 KB instead of 8 MB per GiB for the
 * next image of a pod whose memory changed 1%. (If the peer drops that image
 * meanwhile, its import finds the chunk neither sent nor stored and refuses.)
 */
export async function missingBeyond(peer: PeerImageHolder, hashes: Uint8Array, parentManifest: Uint8Array | undefined): Promise<Uint8Array> {
  if (parentManifest === undefined) return await askInBatches(peer, hashes);
  const refs = uniqueChunkRefs(decodeManifest(parentManifest));
  const held = new HashTable(refs.length);
  for (const r of refs) held.add(r.hash);
  const n = hashes.byteLength / HASH_BYTES;
  const asked: number[] = [];
  for (let i = 0; i < n; i++) if (!held.has(hashes, i * HASH_BYTES)) asked.push(i);
  const question = new Uint8Array(asked.length * HASH_BYTES);
  asked.forEach((i, k) => {
    question.set(hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), k * HASH_BYTES);
  });
  const answer = asked.length === 0 ? new Uint8Array(0) : await askInBatches(peer, question);
  const lacking = new Uint8Array(Math.ceil(n / 8));
  asked.forEach((i, k) => {
    if ((answer[k >> 3]! & (1 << (k & 7))) !== 0) lacking[i >> 3]! |= 1 << (i & 7);
  });
  return lacking;
}

/**
 * The peer's bitmap over `hashes`, asked at most MAX_HASHES_PER_QUERY at a time (a peer refuses a longer
 * question: a pod of 4 GiB has that many pages, before its files). Batches are whole bytes of the bitmap.
 */
export async function askInBatches(peer: PeerImageHolder, hashes: Uint8Array, perQuestion = MAX_HASHES_PER_QUERY): Promise<Uint8Array> {
  const n = hashes.byteLength / HASH_BYTES;
  if (n <= perQuestion) return await peer.missing(hashes);
  if (perQuestion % 8 !== 0) throw new Error("askInBatches: a batch must be a whole number of bitmap bytes");
  const lacking = new Uint8Array(Math.ceil(n / 8));
  for (let first = 0; first < n; first += perQuestion) {
    const count = Math.min(perQuestion, n - first);
    const answer = await peer.missing(hashes.subarray(first * HASH_BYTES, (first + count) * HASH_BYTES));
    if (answer.byteLength !== Math.ceil(count / 8)) throw new Error("the peer answered a bitmap of the wrong size");
    lacking.set(answer, first / 8);
  }
  return lacking;
}
