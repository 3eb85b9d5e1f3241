/**
 * Moving an image to or from a peer: ask which of the image's chunks the
 * other side lacks (one bitmap for the whole image), then stream an export
 * that carries only those. The receiving side verifies every chunk as it
 * arrives, commits them in batches (a cut transfer keeps what arrived) and
 * records the image only when every chunk is there.
 */
import { exportStream, type ExportResult } from "../checkpoint/export.ts";
import { EXPORT_FIXED_BYTES, EXPORT_FRAME_BYTES, EXPORT_INDEX_FRAME_BYTES } from "../checkpoint/export-format.ts";
import { type ImportResult, importImage } from "../checkpoint/import.ts";
import { decodeManifest, uniqueChunkRefs } from "../image/manifest.ts";
import { HASH_BYTES } from "../image/hash.ts";
import { ChunkWorkers } from "../store/chunk-workers.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import type { OnProgress } from "../progress.ts";
import type { ImageTrust } from "../trust/image-trust.ts";
import { bitIsSet, bitmapOf, countBits } from "./bitmap.ts";
import { manifestParentFor, missingBeyond, type PeerImageHolder } from "./manifest-parent.ts";

/** What a transfer needs of a peer (src/api/peer/client.ts's PeerClient). */
export interface PeerImageClient extends PeerImageHolder {
  readonly name: string;
  /** Which of these hashes (concatenated) the peer lacks: a bitmap, bit set = lacking. */
  missing(hashes: Uint8Array): Promise<Uint8Array>;
  /** Send an export stream; the peer imports it. */
  importImage(stream: ReadableStream<Uint8Array>): Promise<ImportResult>;
  /** The exact manifest bytes of the peer's image. */
  manifest(id: string): Promise<Uint8Array>;
  /** An export of the peer's image carrying only the chunks marked in `wanted`. */
  exportImage(id: string, wanted: Uint8Array): Promise<ReadableStream<Uint8Array>>;
}

export interface TransferReport {
  image: string;
  peer: string;
  direction: "push" | "pull";
  /** The image's unique chunks, and their bytes. */
  chunksOffered: number;
  bytesOffered: number;
  /** Chunks the receiver lacked, which travelled. */
  chunksSent: number;
  bytesSent: number;
  chunksSkipped: number;
  /** The export stream's bytes on the wire (chunks plus framing and manifest). */
  wireBytes: number;
  ms: number;
  /** Whether the receiver had the image already. */
  wasPresent: boolean;
}

/** The image's unique chunk hashes, concatenated in manifest order (and the image's parent). */
export function chunkListOf(manifestBytes: Uint8Array): { hashes: Uint8Array; lengths: number[]; parent: string | null } {
  const manifest = decodeManifest(manifestBytes);
  const refs = uniqueChunkRefs(manifest);
  const hashes = new Uint8Array(refs.length * HASH_BYTES);
  refs.forEach((r, i) => {
    hashes.set(r.hash, i * HASH_BYTES);
  });
  return { hashes, lengths: refs.map((r) => r.length), parent: manifest.parent };
}

/**
 * Send image `id` to `peer`: only the chunks it lacks travel. `onProgress`
 * hears "asking" (which chunks the peer lacks), "sending" (bytes of the
 * export stream handed to the connection, of what it will be), and
 * "committing" (the peer verifies the end and records the image).
 */
export async function pushImage(
  catalogue: ImageCatalogue,
  trust: ImageTrust,
  peer: PeerImageClient,
  id: string,
  onProgress: OnProgress = () => {},
): Promise<TransferReport> {
  const t0 = performance.now();
  const manifestBytes = catalogue.manifestBytes(id);
  const { hashes, lengths, parent } = chunkListOf(manifestBytes);
  onProgress({ phase: "asking", bytes: 0, totalBytes: null });
  // The manifest as a delta against an image of the pod the peer holds; chunks named by index;
  // and "which do you lack?" only for the chunks that image does not have.
  const manifestParent = (await manifestParentFor(catalogue, peer, id, parent)) ?? undefined;
  const lacking = await missingBeyond(peer, hashes, manifestParent?.manifestBytes);
  const result: Partial<ExportResult> = {};
  // The peer verifies every chunk on its hashing threads: it is not hashed here as well.
  const options = { only: lacking, signature: trust.signatureOf(id), manifestParent, chunkIndexes: true, isVerifiedByReceiver: true };
  // The estimate counts the whole manifest even when a delta goes: at worst the line stops short of 100%.
  const total = exportSizeOf(manifestBytes.byteLength, lengths, lacking, EXPORT_INDEX_FRAME_BYTES);
  const sent = countingStream(exportStream(catalogue, id, options, result), (n, isDone) =>
    onProgress(isDone ? { phase: "committing", bytes: 0, totalBytes: null } : { phase: "sending", bytes: Math.min(n, total), totalBytes: total }),
  );
  onProgress({ phase: "sending", bytes: 0, totalBytes: total });
  const imp = await peer.importImage(sent);
  return report(id, peer.name, "push", lengths, lacking, result.totalBytes ?? 0, imp, t0);
}

/**
 * Fetch a peer's image. A cluster member is trusted as much as an operator's
 * `--trust`: the image is admitted as a trusted import (or as local, when this
 * host signed it) and gets every check an image from elsewhere gets.
 */
export async function pullImage(
  catalogue: ImageCatalogue,
  trust: ImageTrust,
  peer: PeerImageClient,
  id: string,
  onProgress: OnProgress = () => {},
): Promise<TransferReport> {
  const t0 = performance.now();
  onProgress({ phase: "asking", bytes: 0, totalBytes: null });
  const manifestBytes = await peer.manifest(id);
  const { hashes, lengths } = chunkListOf(manifestBytes);
  const views = hashViewsOf(hashes);
  const lackingHere = new Set(catalogue.store.missing(views));
  const wanted = bitmapOf(views.length, (i) => lackingHere.has(views[i]!));
  const total = exportSizeOf(manifestBytes.byteLength, lengths, wanted);
  let wireBytes = 0;
  onProgress({ phase: "receiving", bytes: 0, totalBytes: total });
  const counted = countingStream(await peer.exportImage(id, wanted), (n, isDone) => {
    wireBytes = n;
    onProgress(isDone ? { phase: "committing", bytes: 0, totalBytes: null } : { phase: "receiving", bytes: Math.min(n, total), totalBytes: total });
  });
  const imp = await importImage(catalogue, counted, {
    admit: (id, sig) => trust.admitImport(id, sig, { trust: true }),
    keepPartial: true,
    isExpectedNew: true,
    threads: ChunkWorkers.shared(),
  });
  return report(id, peer.name, "pull", lengths, wanted, wireBytes, imp, t0);
}

/** The bytes of an export carrying the chunks marked in `only`: header, manifest, signature, frames, trailer. */
export function exportSizeOf(manifestBytes: number, lengths: readonly number[], only: Uint8Array, frameBytes = EXPORT_FRAME_BYTES): number {
  let total = EXPORT_FIXED_BYTES + manifestBytes;
  lengths.forEach((l, i) => {
    if (bitIsSet(only, i)) total += frameBytes + l;
  });
  return total;
}

/** `stream`, telling `count` the bytes that went through so far after each piece, and once more at its end. */
function countingStream(stream: ReadableStream<Uint8Array>, count: (bytes: number, isDone: boolean) => void): ReadableStream<Uint8Array> {
  let n = 0;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        n += chunk.byteLength;
        count(n, false);
        c.enqueue(chunk);
      },
      flush() {
        count(n, true);
      },
    }),
  );
}

function hashViewsOf(all: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < all.byteLength; i += HASH_BYTES) out.push(all.subarray(i, i + HASH_BYTES));
  return out;
}

function report(
  image: string,
  peer: string,
  direction: "push" | "pull",
  lengths: number[],
  sent: Uint8Array,
  wireBytes: number,
  imp: ImportResult,
  t0: number,
): TransferReport {
  let bytesOffered = 0;
  let bytesSent = 0;
  lengths.forEach((l, i) => {
    bytesOffered += l;
    if (bitIsSet(sent, i)) bytesSent += l;
  });
  const chunksSent = countBits(sent);
  return {
    image,
    peer,
    direction,
    chunksOffered: lengths.length,
    bytesOffered,
    chunksSent,
    bytesSent,
    chunksSkipped: lengths.length - chunksSent,
    wireBytes,
    ms: Math.round(performance.now() - t0),
    wasPresent: imp.wasPresent,
  };
}
