/**
 * Writing an export file (export-format.ts) of one image: as a stream of byte
 * batches, a web ReadableStream, or into a sink. Every chunk the export sends
 * is pinned while it is read, so a gc or an `image rm` meanwhile cannot pull
 * it away. Its reader is import.ts.
 */
import { once } from "node:events";
import { corrupts } from "../debug/failpoints.ts";
import { InvalidArgumentError } from "../errors.ts";
import { fromHex, HASH_BYTES, sha256, toHex } from "../image/hash.ts";
import { encodeManifestDelta } from "../image/manifest-delta.ts";
import { decodeManifest, uniqueChunkRefs } from "../image/manifest.ts";
import { CorruptChunkError, MissingChunkError } from "../store/errors.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import { encodeSignatureBlock, type ImageSignature, SIGNATURE_BLOCK_BYTES } from "../trust/image-signature.ts";
import {
  BATCH_BYTES,
  EXPORT_FRAME_BYTES,
  EXPORT_INDEX_FRAME_BYTES,
  EXPORT_MAGIC,
  EXPORT_VERSION,
  FLAG_CHUNK_INDEXES,
  FLAG_MANIFEST_DELTA,
  FLAG_SIGNED,
  FRAME_CHUNK,
  FRAME_CHUNK_INDEX,
  FRAME_TRAILER,
  HEADER_BYTES,
  TRAILER_BYTES,
  setUint32,
} from "./export-format.ts";

export interface ExportResult {
  id: string;
  chunks: number;
  chunkBytes: number;
  totalBytes: number;
}

export interface ExportOptions {
  /**
   * Send only these chunks: a bitmap over the image's unique chunks in
   * manifest order (uniqueChunkRefs), bit i set to send chunk i. The
   * receiver must hold the others; its import checks that.
   */
  only?: Uint8Array;
  /** The image's signature, sent after the manifest (flag FLAG_SIGNED); null or absent: unsigned. */
  signature?: ImageSignature | null;
  /** Send the manifest as a delta against this image's (which the receiver has): for a peer. */
  manifestParent?: { id: string; manifestBytes: Uint8Array };
  /** Name each chunk by its index among the manifest's distinct chunks instead of its hash: for a peer. */
  chunkIndexes?: boolean;
  /**
   * The receiver verifies every chunk against the manifest's hash before it
   * counts (a peer's import does): chunks are not hashed again as they are
   * read here. A chunk corrupt on this disk is then refused by the receiver,
   * naming it and its file, instead of by this side; nothing corrupt is ever
   * stored. A file export keeps the check: its reader may be anything.
   */
  isVerifiedByReceiver?: boolean;
}

/** The export as a stream of byte batches (for an HTTP response or a pipe). */
export async function* exportFrames(
  catalogue: ImageCatalogue,
  id: string,
  result?: Partial<ExportResult>,
  options: ExportOptions = {},
): AsyncGenerator<Uint8Array> {
  const store = catalogue.store;
  const manifestBytes = catalogue.manifestBytes(id);
  const manifest = decodeManifest(manifestBytes);
  const allRefs = uniqueChunkRefs(manifest);
  const only = options.only;
  if (only !== undefined && only.byteLength !== Math.ceil(allRefs.length / 8)) {
    throw new InvalidArgumentError(`The chunk selection has ${only.byteLength} bytes; image ${id} has ${allRefs.length} chunks`);
  }
  // An export for a peer carries only the chunks it lacks; the others must be in its store.
  const picked: number[] = [];
  for (let i = 0; i < allRefs.length; i++) if (only === undefined || (only[i >> 3]! & (1 << (i & 7))) !== 0) picked.push(i);
  const refs = picked.map((i) => allRefs[i]!);
  // Pin what we are about to send, so a gc or an `image rm` meanwhile cannot pull it away. The image
  // is in the catalogue (just read, no await since): its chunks are all stored.
  const lease = store.writer(`export ${id}`);
  try {
    const all = new Uint8Array(refs.length * HASH_BYTES);
    refs.forEach((r, i) => {
      all.set(r.hash, i * HASH_BYTES);
    });
    lease.trustStored(all);
    const locations = store.locate(all);
    const lost = locations.indexOf(null);
    if (lost >= 0) throw new MissingChunkError(toHex(refs[lost]!.hash), { path: `${refs[lost]!.tree}/${refs[lost]!.path}` });
    const final = new Bun.CryptoHasher("sha256");
    const header = new Uint8Array(HEADER_BYTES);
    header.set(new TextEncoder().encode(EXPORT_MAGIC));
    const hv = new DataView(header.buffer);
    hv.setUint32(8, EXPORT_VERSION);
    const sig = options.signature ? encodeSignatureBlock(options.signature) : new Uint8Array(0);
    const parent = options.manifestParent;
    const isIndexed = options.chunkIndexes === true;
    hv.setUint32(12, (sig.byteLength > 0 ? FLAG_SIGNED : 0) | (parent ? FLAG_MANIFEST_DELTA : 0) | (isIndexed ? FLAG_CHUNK_INDEXES : 0));
    final.update(header);
    const body = parent ? encodeManifestDelta(parent.manifestBytes, manifestBytes) : manifestBytes;
    const mhead = new Uint8Array(4 + HASH_BYTES + (parent ? HASH_BYTES : 0));
    new DataView(mhead.buffer).setUint32(0, body.byteLength);
    const mhash = sha256(manifestBytes);
    mhead.set(mhash, 4);
    final.update(mhash);
    if (parent) {
      const parentId = fromHex(parent.id);
      mhead.set(parentId, 4 + HASH_BYTES);
      final.update(parentId);
    }
    final.update(sig);
    let total = HEADER_BYTES + mhead.byteLength + body.byteLength + sig.byteLength;
    yield concat([header, mhead, body, sig]);

    // Frames are written straight into one buffer per batch (no per-chunk arrays to join), and
    // their hashes and lengths go to the final hash once per batch.
    const FRAME_HEAD = EXPORT_FRAME_BYTES;
    const INDEX_FRAME_HEAD = EXPORT_INDEX_FRAME_BYTES;
    const batchBuffer = (need: number) => Buffer.allocUnsafe(Math.max(BATCH_BYTES + (64 << 10), need + TRAILER_BYTES));
    let out = batchBuffer(0);
    let used = 0;
    let heads = new Uint8Array(0);
    let headsUsed = 0;
    let chunkBytes = 0;
    // Read in runs (one pread for neighbours in a pack), every chunk checked against its hash.
    const chunks = store.readMany(all, locations, { isTransient: true, isCheckedByReader: options.isVerifiedByReceiver === true }); // each copied into a frame at once
    for (const [k, r] of refs.entries()) {
      let data: Uint8Array;
      try {
        data = chunks.next().value as Uint8Array;
      } catch (e) {
        if (e instanceof CorruptChunkError) throw e.inFile(`${r.tree}/${r.path}`);
        if (e instanceof MissingChunkError) throw new MissingChunkError(e.hash, { path: `${r.tree}/${r.path}`, cause: e });
        throw e;
      }
      const len = data.byteLength;
      const frameHead = isIndexed ? INDEX_FRAME_HEAD : FRAME_HEAD;
      if (used + frameHead + len + TRAILER_BYTES > out.byteLength) {
        // A chunk larger than the room left (file chunks may be up to MAX_CHUNK_BYTES): send what is there first.
        final.update(heads.subarray(0, headsUsed));
        headsUsed = 0;
        total += used;
        if (used > 0) yield out.subarray(0, used);
        out = batchBuffer(frameHead + len);
        used = 0;
      }
      // The final hash covers each chunk's hash and length, however its frame names the chunk.
      if (heads.byteLength < headsUsed + FRAME_HEAD - 1) {
        const grown = new Uint8Array(Math.max(4096, heads.byteLength * 2));
        grown.set(heads.subarray(0, headsUsed));
        heads = grown;
      }
      heads.set(r.hash, headsUsed);
      setUint32(heads, headsUsed + HASH_BYTES, len);
      if (isIndexed) {
        // The receiver knows each chunk's hash and length from the manifest: 5 bytes of frame instead of 37.
        out[used] = FRAME_CHUNK_INDEX;
        setUint32(out, used + 1, picked[k]!);
      } else {
        out[used] = FRAME_CHUNK;
        out.set(heads.subarray(headsUsed, headsUsed + FRAME_HEAD - 1), used + 1);
      }
      headsUsed += FRAME_HEAD - 1;
      out.set(data, used + frameHead);
      if (corrupts("export.chunk-framed")) out[used + frameHead] = out[used + frameHead]! ^ 0xff;
      used += frameHead + len;
      chunkBytes += len;
      if (used >= BATCH_BYTES) {
        final.update(heads.subarray(0, headsUsed));
        headsUsed = 0;
        total += used;
        yield out.subarray(0, used);
        out = batchBuffer(0);
        used = 0;
      }
    }
    final.update(heads.subarray(0, headsUsed));
    const trailer = new Uint8Array(TRAILER_BYTES);
    trailer[0] = FRAME_TRAILER;
    const tv = new DataView(trailer.buffer);
    tv.setBigUint64(1, BigInt(refs.length));
    tv.setBigUint64(9, BigInt(chunkBytes));
    final.update(trailer.subarray(1, 17));
    trailer.set(new Uint8Array(final.digest() as Uint8Array), 17);
    out.set(trailer, used);
    used += trailer.byteLength;
    total += used;
    yield out.subarray(0, used);
    if (result !== undefined) Object.assign(result, { id, chunks: refs.length, chunkBytes, totalBytes: total });
  } finally {
    lease.close();
  }
}

/** The bytes of a whole export file of image `id` (signed when `isSigned`), known before it is written: for a progress line's total. */
export function exportSize(catalogue: ImageCatalogue, id: string, isSigned: boolean): number {
  const manifestBytes = catalogue.manifestBytes(id);
  let n = HEADER_BYTES + 4 + HASH_BYTES + manifestBytes.byteLength + (isSigned ? SIGNATURE_BLOCK_BYTES : 0) + TRAILER_BYTES;
  for (const r of uniqueChunkRefs(decodeManifest(manifestBytes))) n += EXPORT_FRAME_BYTES + r.length;
  return n;
}

/** The export as a web ReadableStream (pull-based, so it follows the reader's pace). */
export function exportStream(catalogue: ImageCatalogue, id: string, options: ExportOptions = {}, result?: Partial<ExportResult>): ReadableStream<Uint8Array> {
  const it = exportFrames(catalogue, id, result, options);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await it.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await it.return(undefined);
    },
  });
}

/** Something export can write to: a web WritableStream or a Node writable (a file, stdout). */
export type ByteSink = WritableStream<Uint8Array> | NodeJS.WritableStream;

/** Write image `id` to `sink` as one export file; ends a web stream, leaves a Node stream open. */
export async function exportImage(
  catalogue: ImageCatalogue,
  id: string,
  sink: ByteSink,
  opts: { signature?: ImageSignature | null } = {},
): Promise<ExportResult> {
  const result: Partial<ExportResult> = {};
  if ("getWriter" in sink) {
    const w = sink.getWriter();
    try {
      for await (const b of exportFrames(catalogue, id, result, opts)) await w.write(b);
      await w.close();
    } catch (e) {
      await w.abort(e).catch(() => {});
      throw e;
    }
  } else {
    for await (const b of exportFrames(catalogue, id, result, opts)) {
      if (!sink.write(b)) await once(sink as unknown as NodeJS.EventEmitter, "drain");
    }
  }
  return result as ExportResult;
}

function concat(parts: Uint8Array[], total?: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const n = total ?? parts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
