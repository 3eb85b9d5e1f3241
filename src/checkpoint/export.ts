/**
 * One self-contained, streamable file per image (docs/image-format.md):
 *
 *   header   "APODIMG\0", u32 BE format version, u32 BE flags (1: signed, 2: manifest delta, 4: chunk indexes)
 *   manifest u32 BE length, 32-byte SHA-256 (the image id), msgpack bytes
 *   [delta]  instead: u32 BE delta length, 32-byte SHA-256 (the image id), 32-byte id of the
 *            parent image whose manifest the delta applies to, the delta (src/image/manifest-delta.ts)
 *   [signed] 32-byte Ed25519 public key, 64-byte signature of the image id (src/trust/)
 *   chunks   "C", 32-byte SHA-256, u32 BE length, bytes     (each distinct stored chunk once)
 *            [chunk indexes] instead: "c", u32 BE index of the chunk among the manifest's
 *            distinct chunks (uniqueChunkRefs), bytes of the length the manifest says
 *   trailer  "T", u64 BE chunk count, u64 BE chunk bytes, 32-byte final hash
 *
 * The final hash is SHA-256 over the header, the manifest hash (and the
 * parent's id), every frame's hash and length, and the two counts (and the
 * signature block, when there is one): with each chunk checked against its
 * own hash it covers every byte, without hashing the data twice.
 *
 * Between peers the manifest travels as a delta against an image the
 * receiver has (the same pod's previous one) and chunks by index: the next
 * image of a pod then costs little more than its changed pages.
 *
 * Import reads a stream, validates the manifest before taking any chunk,
 * verifies every chunk, stages new ones in a writer (pinned against gc) and
 * commits them with the image in one transaction; any failure aborts the
 * writer, leaving the store as it was.
 */
import { once } from "node:events";
import { failpoint } from "../debug/failpoints.ts";
import { InvalidArgumentError } from "../errors.ts";
import { MAX_CHUNK_BYTES } from "../store/chunk-store.ts";
import type { ClaimedChunk } from "../store/chunk-writer.ts";
import type { ChunkWorkers } from "../store/chunk-workers.ts";
import { ChunkMismatchError, CorruptChunkError, MissingChunkError } from "../store/errors.ts";
import { HashTable } from "../image/hash-table.ts";
import { fromHex, HASH_BYTES, hashEquals, sha256, toHex } from "../image/hash.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import { decodeSignatureBlock, encodeSignatureBlock, type ImageSignature, SIGNATURE_BLOCK_BYTES } from "../trust/image-signature.ts";
import { Yielder } from "../yielder.ts";
import { corrupts } from "../debug/failpoints.ts";
import { InvalidManifestError, LIMITS, MANIFEST_SHAPE, UnsupportedFormatError, decodeManifest, uniqueChunkRefs } from "../image/manifest.ts";
import { msgpackShape } from "../image/msgpack-bounds.ts";
import { applyManifestDelta, encodeManifestDelta } from "../image/manifest-delta.ts";
import { ReceivedPages } from "./received-pages.ts";

export const EXPORT_MAGIC = "APODIMG\0";
export const EXPORT_VERSION = 1;
const HEADER_BYTES = 16;
/** An export's bytes besides its manifest and frames: header, manifest length and hash, signature block (at most), trailer. */
export const EXPORT_FIXED_BYTES = HEADER_BYTES + 4 + 32 + SIGNATURE_BLOCK_BYTES + 1 + 16 + 32;
/** Each chunk's frame head: "C", hash, length. */
export const EXPORT_FRAME_BYTES = 1 + 32 + 4;
/** Each chunk's frame head with chunk indexes (flag 4): "c", index. */
export const EXPORT_INDEX_FRAME_BYTES = 1 + 4;
const FRAME_CHUNK = 0x43; // "C"
const FRAME_CHUNK_INDEX = 0x63; // "c"
const FRAME_TRAILER = 0x54; // "T"
const BATCH_BYTES = 1 << 20;
/** An import verifies and stores chunks this many at a time (at most; or BATCH_BYTES). */
const IMPORT_BATCH_CHUNKS = 256;
/** With threads: a batch's buffer (each chunk's hash then its bytes). */
const PACKED_BYTES = BATCH_BYTES + IMPORT_BATCH_CHUNKS * HASH_BYTES;
/** With threads: batches being checked at once (about BATCH_BYTES each) before the oldest is waited for. */
const IMPORT_BATCHES_IN_FLIGHT = 3;
/** An import commits the chunks it verified every this many bytes (unreferenced until the image is committed; gc takes them if it never is). */
const IMPORT_COMMIT_BYTES = 64 << 20;
/** How much of a manifest is read and shape-checked before the rest. */
const MANIFEST_PREFIX_BYTES = 1 << 20;
/** Header flag: a signature block follows the manifest. */
const FLAG_SIGNED = 1;
/** Header flag: the manifest is a delta against a parent image's. */
const FLAG_MANIFEST_DELTA = 2;
/** Header flag: chunk frames name their chunk by index ("c"), not by hash ("C"). */
const FLAG_CHUNK_INDEXES = 4;
const KNOWN_FLAGS = FLAG_SIGNED | FLAG_MANIFEST_DELTA | FLAG_CHUNK_INDEXES;

/** The export file is truncated, corrupt or hostile; the store was not changed. */
export class InvalidExportError extends InvalidArgumentError {
  override name = "InvalidExportError";
}

/** The export's manifest is a delta against an image this host does not have; the store was not changed. */
export class MissingParentError extends InvalidExportError {
  override name = "MissingParentError";
}

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
    const TRAILER_BYTES = 1 + 16 + HASH_BYTES;
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
  let n = HEADER_BYTES + 4 + HASH_BYTES + manifestBytes.byteLength + (isSigned ? SIGNATURE_BLOCK_BYTES : 0) + 1 + 16 + HASH_BYTES;
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

/** Something import can read: a web ReadableStream, a Node readable (a file, stdin), or any async iterable of bytes. */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface ImportResult {
  id: string;
  chunks: number;
  /** Chunks the store did not have before. */
  newChunks: number;
  newBytes: number;
  /** Whether the image was already in the catalogue. */
  wasPresent: boolean;
}

export interface ImportOptions {
  /**
   * Decides, from the image id and the export's signature (null when it has
   * none), whether the image may come in, before any chunk is read: throws to
   * refuse, or returns a step that runs in the import's commit transaction.
   */
  admit?: (id: string, signature: ImageSignature | null) => Promise<() => void>;
  /**
   * Commit verified chunks every IMPORT_COMMIT_BYTES, so that an import cut
   * short keeps them (unreferenced until an image uses them; gc takes them
   * otherwise): for transfers from a peer, whose retry then sends only the
   * rest. A file import keeps nothing of a failed attempt.
   */
  keepPartial?: boolean;
  /** With keepPartial, commit every this many chunk bytes (default IMPORT_COMMIT_BYTES; tests use less). */
  commitEveryBytes?: number;
  /**
   * The exact manifest bytes of image `id` when this host has it, else null:
   * an export whose manifest is a delta (from a peer) is rebuilt against it.
   * Without it, such an export is refused.
   */
  parentManifest?: (id: string) => Uint8Array | null;
  /**
   * The sender sent only chunks this store lacked when it asked (a peer's
   * push or pull): they are written without asking the store about each
   * batch (ChunkWriter.putBatch's isExpectedNew). Not for files, which carry
   * every chunk of their image.
   */
  isExpectedNew?: boolean;
  /**
   * Check chunks against their hashes on these threads while this one parses
   * and writes (a peer's transfer: the agent's thread is the bottleneck).
   * Without, every chunk is hashed on the calling thread.
   */
  threads?: Pick<ChunkWorkers, "verifyChunks">;
  /** Told the chunk bytes received and verified so far, after each batch (for progress). */
  onProgress?: (chunkBytes: number) => void;
}

/** Read one export file from `source` into the store and catalogue; returns the image id. */
export async function importImage(catalogue: ImageCatalogue, source: ByteSource, opts: ImportOptions = {}): Promise<ImportResult> {
  const reader = new ByteReader(source);
  const final = new Bun.CryptoHasher("sha256");
  const header = await reader.exact(HEADER_BYTES, "the header");
  if (new TextDecoder().decode(header.subarray(0, 8)) !== EXPORT_MAGIC) {
    throw new InvalidExportError("Cannot import: this is not an autopod image export (bad magic)");
  }
  const hv = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  const version = hv.getUint32(8);
  if (version !== EXPORT_VERSION) throw new UnsupportedFormatError("export", version, EXPORT_VERSION);
  const flags = hv.getUint32(12);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new InvalidExportError(`Cannot import: unknown export flags ${flags}`);
  const isDelta = (flags & FLAG_MANIFEST_DELTA) !== 0;
  const isIndexed = (flags & FLAG_CHUNK_INDEXES) !== 0;
  final.update(header);

  const mhead = (await reader.exact(4 + HASH_BYTES + (isDelta ? HASH_BYTES : 0), "the manifest header")).slice();
  const mlen = new DataView(mhead.buffer, mhead.byteOffset, 4).getUint32(0);
  if (mlen > LIMITS.manifestBytes) {
    throw new InvalidExportError(`Cannot import: the manifest${isDelta ? " delta" : ""} is ${mlen} bytes, over the limit of ${LIMITS.manifestBytes}`);
  }
  const mhash = mhead.slice(4, 4 + HASH_BYTES);
  let manifestBytes: Uint8Array;
  if (isDelta) {
    // Its parent first: a delta against an image this host lacks is refused before the delta is read.
    const parentId = toHex(mhead.subarray(4 + HASH_BYTES));
    const parent = opts.parentManifest?.(parentId) ?? null;
    if (parent === null) {
      throw new MissingParentError(`Cannot import image ${toHex(mhash)}: its manifest is a delta against image ${parentId}, which this host does not have`);
    }
    const delta = new Uint8Array(mlen);
    await reader.readInto(delta, 0, mlen, "the manifest delta");
    manifestBytes = applyManifestDelta(parent, delta);
    if (!hashEquals(sha256(manifestBytes), mhash)) {
      throw new InvalidExportError(`Cannot import: the manifest rebuilt from its delta against image ${parentId} does not match its hash ${toHex(mhash)}`);
    }
  } else {
    // Its first bytes first: a manifest that declares a list over the limit is refused before the rest is read.
    manifestBytes = new Uint8Array(mlen);
    const head = Math.min(mlen, MANIFEST_PREFIX_BYTES);
    await reader.readInto(manifestBytes, 0, head, "the manifest");
    const early = msgpackShape(manifestBytes.subarray(0, head), MANIFEST_SHAPE, { isPrefix: head < mlen });
    if ("problem" in early) throw new InvalidManifestError(`Invalid manifest: ${early.problem}`);
    await reader.readInto(manifestBytes, head, mlen - head, "the manifest");
    if (!hashEquals(sha256(manifestBytes), mhash)) {
      throw new InvalidExportError(`Cannot import: the manifest is corrupt (it does not match its hash ${toHex(mhash)})`);
    }
  }
  const id = toHex(mhash);
  final.update(mhash);
  if (isDelta) final.update(mhead.subarray(4 + HASH_BYTES));
  let signature: ImageSignature | null = null;
  if (flags & FLAG_SIGNED) {
    const block = (await reader.exact(SIGNATURE_BLOCK_BYTES, "the signature")).slice();
    final.update(block);
    signature = decodeSignatureBlock(block);
  }
  // Who made it, before anything is decoded or stored: an untrusted file stops here.
  const recordAdmission = opts.admit ? await opts.admit(id, signature) : () => {};
  const manifest = decodeManifest(manifestBytes); // hostile paths, sizes and versions stop here
  // Binary lookups, not hex strings: this loop runs once per 4 KiB page, 262,144 times per GiB.
  const refs = uniqueChunkRefs(manifest);
  const expected = new HashTable(refs.length);
  for (const r of refs) expected.add(r.hash);
  const isReceived = new Uint8Array(refs.length);

  const store = catalogue.store;
  const writer = store.writer(`import ${id}`);
  // A large import must not hold the agent's one thread: `ps` and other pods' work go on meanwhile.
  const yielder = new Yielder();
  try {
    // Page images mostly new here are written in place, so a restore links them as it does a local image's.
    const pages = new ReceivedPages(manifest, writer);
    await failpoint("import.manifest-read");
    let receivedCount = 0;
    let chunkBytes = 0;
    let storedBytes = 0;
    let committedBytes = 0;
    // Verified and written a batch at a time: one update of the final hash, one store call per batch.
    // With threads, a batch's chunks are copied into one buffer that a hashing thread checks while
    // this thread parses the next ones (a few batches in flight); they are written, in order, once checked.
    const threads = opts.threads ?? null;
    let batch: ClaimedChunk[] = [];
    let batchRefs: number[] = [];
    let batchBytes = 0;
    let packed: Uint8Array | null = null;
    let packedUsed = 0;
    const heads = new Uint8Array(IMPORT_BATCH_CHUNKS * (HASH_BYTES + 4));
    const indexedHead = new Uint8Array(HASH_BYTES + 4);
    // The batch buffers, reused: a fresh MiB per batch cost more in page faults than its copy.
    const spare: ArrayBuffer[] = [];
    const inFlight: Array<{ checked: Promise<{ mismatched: number[]; data: ArrayBuffer }>; refs: number[]; bytes: number }> = [];
    const corrupt = (hashHex: string, refIndex: number) => {
      const r = refs[refIndex]!;
      return new InvalidExportError(`Cannot import image ${id}: chunk ${hashHex} of file "${r.tree}/${r.path}" is corrupt in the export`);
    };
    const store = (items: ClaimedChunk[], itemRefs: number[], bytes: number, isVerified: boolean) => {
      try {
        // Chunks of the page images received in place go there (verified first, here or by putInFile); the rest to packs.
        let rest = items;
        if (pages.files > 0) {
          rest = [];
          const putOptions = { isVerified, isExpectedNew: opts.isExpectedNew === true };
          for (const c of items) if (!pages.put(c.hash as Uint8Array, c.bytes, putOptions)) rest.push(c);
        }
        if (rest.length > 0) writer.putBatch(rest, { isExpectedNew: opts.isExpectedNew === true, isVerified });
      } catch (e) {
        if (e instanceof ChunkMismatchError) {
          const k = items.findIndex((c) => toHex(c.hash as Uint8Array) === e.hashes[0]);
          throw corrupt(e.hashes[0]!, itemRefs[Math.max(0, k)]!);
        }
        throw e;
      }
      storedBytes += bytes;
      opts.onProgress?.(storedBytes);
      // What arrived stays once committed: a transfer cut later resumes with only what is still missing.
      if (opts.keepPartial && storedBytes - committedBytes >= (opts.commitEveryBytes ?? IMPORT_COMMIT_BYTES)) {
        writer.commit();
        committedBytes = storedBytes;
      }
    };
    const settleOldest = async () => {
      const f = inFlight.shift()!;
      const { mismatched, data } = await f.checked;
      const bytes = new Uint8Array(data);
      const items: ClaimedChunk[] = [];
      let at = 0;
      for (const i of f.refs) {
        const len = refs[i]!.length;
        items.push({ hash: bytes.subarray(at, at + HASH_BYTES), bytes: bytes.subarray(at + HASH_BYTES, at + HASH_BYTES + len) });
        at += HASH_BYTES + len;
      }
      if (mismatched.length > 0) throw corrupt(toHex(items[mismatched[0]!]!.hash as Uint8Array), f.refs[mismatched[0]!]!);
      store(items, f.refs, f.bytes, true);
      // Its chunks are written (or copied into the writer's pack buffer): the buffer takes the next batch.
      pages.flush();
      if (data.byteLength === PACKED_BYTES) spare.push(data);
    };
    const flush = async () => {
      if (batchRefs.length === 0) return;
      final.update(heads.subarray(0, batchRefs.length * (HASH_BYTES + 4)));
      chunkBytes += batchBytes;
      if (threads === null) {
        store(batch, batchRefs, batchBytes, false);
        batch = [];
      } else {
        // The whole buffer goes to the thread (no copy); the lengths say how much of it is chunks.
        const checked = threads.verifyChunks(
          packed!.buffer as ArrayBuffer,
          Uint32Array.from(batchRefs, (i) => refs[i]!.length),
        );
        checked.catch(() => {}); // awaited in order by settleOldest; an import that failed first never asks
        inFlight.push({ checked, refs: batchRefs, bytes: batchBytes });
        packed = null;
        packedUsed = 0;
        if (inFlight.length >= IMPORT_BATCHES_IN_FLIGHT) await settleOldest();
      }
      batchRefs = [];
      batchBytes = 0;
    };
    for (;;) {
      if (yielder.isDue()) await yielder.yield();
      const tagBytes = reader.exact(1, "a frame");
      const tag = (tagBytes instanceof Uint8Array ? tagBytes : await tagBytes)[0];
      if (tag === FRAME_TRAILER) break;
      if (tag !== (isIndexed ? FRAME_CHUNK_INDEX : FRAME_CHUNK)) {
        throw new InvalidExportError(`Cannot import image ${id}: unknown frame type ${tag} at byte ${reader.offset - 1}`);
      }
      // What the final hash covers of this frame: the chunk's hash and length.
      let fh: Uint8Array;
      let i: number;
      if (isIndexed) {
        // The chunk by its index among the manifest's: its hash and length are the manifest's.
        const ibBytes = reader.exact(4, () => `chunk ${receivedCount + 1} of ${refs.length}`);
        const ib = ibBytes instanceof Uint8Array ? ibBytes : await ibBytes;
        i = ((ib[0]! << 24) | (ib[1]! << 16) | (ib[2]! << 8) | ib[3]!) >>> 0;
        if (i >= refs.length) {
          throw new InvalidExportError(`Cannot import image ${id}: chunk index ${i} is out of range (the manifest has ${refs.length} chunks)`);
        }
        fh = indexedHead;
        fh.set(refs[i]!.hash);
        setUint32(fh, HASH_BYTES, refs[i]!.length);
      } else {
        const fhBytes = reader.exact(HASH_BYTES + 4, () => `chunk ${receivedCount + 1} of ${refs.length}`);
        fh = fhBytes instanceof Uint8Array ? fhBytes : await fhBytes;
        i = expected.indexOf(fh, 0);
        if (i < 0) throw new InvalidExportError(`Cannot import image ${id}: chunk ${toHex(fh.subarray(0, HASH_BYTES))} is not referenced by the manifest`);
      }
      const ref = refs[i]!;
      if (isReceived[i] === 1) throw new InvalidExportError(`Cannot import image ${id}: chunk ${toHex(ref.hash)} appears twice`);
      const len = ((fh[HASH_BYTES]! << 24) | (fh[HASH_BYTES + 1]! << 16) | (fh[HASH_BYTES + 2]! << 8) | fh[HASH_BYTES + 3]!) >>> 0;
      if (len !== ref.length || len > MAX_CHUNK_BYTES) {
        throw new InvalidExportError(`Cannot import image ${id}: chunk ${toHex(ref.hash)} is framed as ${len} bytes where the manifest says ${ref.length}`);
      }
      if (threads !== null && packed !== null && packedUsed + HASH_BYTES + len > packed.byteLength) await flush();
      const dataBytes = reader.exact(len, () => `chunk ${receivedCount + 1} of ${refs.length} (${toHex(ref.hash)})`);
      const data = dataBytes instanceof Uint8Array ? dataBytes : await dataBytes;
      heads.set(fh, batchRefs.length * (HASH_BYTES + 4));
      isReceived[i] = 1;
      receivedCount++;
      if (threads === null) {
        batch.push({ hash: ref.hash, bytes: data });
      } else {
        if (packed === null) {
          const reused = HASH_BYTES + len <= PACKED_BYTES ? spare.pop() : undefined;
          packed = reused ? new Uint8Array(reused) : new Uint8Array(Math.max(PACKED_BYTES, HASH_BYTES + len));
        }
        packed.set(ref.hash, packedUsed);
        packed.set(data, packedUsed + HASH_BYTES);
        packedUsed += HASH_BYTES + len;
      }
      batchRefs.push(i);
      batchBytes += len;
      if (batchRefs.length === IMPORT_BATCH_CHUNKS || batchBytes >= BATCH_BYTES) await flush();
    }
    await flush();
    while (inFlight.length > 0) await settleOldest();
    const trailer = await reader.exact(16 + HASH_BYTES, "the trailer");
    const tv = new DataView(trailer.buffer, trailer.byteOffset, 16);
    const count = tv.getBigUint64(0);
    const bytes = tv.getBigUint64(8);
    if (count !== BigInt(receivedCount) || bytes !== BigInt(chunkBytes)) {
      throw new InvalidExportError(
        `Cannot import image ${id}: the trailer counts ${count} chunks of ${bytes} bytes but the file has ${receivedCount} of ${chunkBytes}`,
      );
    }
    final.update(trailer.subarray(0, 16));
    if (!hashEquals(new Uint8Array(final.digest() as Uint8Array), trailer.subarray(16))) {
      throw new InvalidExportError(`Cannot import image ${id}: the final hash does not match (the frames were altered or reordered)`);
    }
    if (!(await reader.isAtEnd())) throw new InvalidExportError(`Cannot import image ${id}: there are bytes after the trailer`);
    // Chunks the export left out must already be here (and get pinned).
    const notSent: number[] = [];
    for (let i = 0; i < refs.length; i++) if (isReceived[i] === 0) notSent.push(i);
    const lacking = writer.missing(notSent.map((i) => refs[i]!.hash));
    if (lacking.length > 0) {
      const r = refs[expected.indexOf(lacking[0]!)]!;
      throw new InvalidExportError(`Cannot import image ${id}: chunk ${toHex(r.hash)} of file "${r.tree}/${r.path}" is neither in the export nor in the store`);
    }
    pages.seal();
    await failpoint("import.chunks-stored");
    const wasPresent = catalogue.has(id);
    const newChunks = writer.newChunks;
    const newBytes = writer.newBytes;
    catalogue.addEncoded(manifestBytes, manifest, writer, recordAdmission); // decoded and validated above: not again
    await failpoint("import.committed");
    writer.close();
    return { id, chunks: refs.length, newChunks, newBytes, wasPresent };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

/** Exact reads over a byte stream, naming what was cut short. */
class ByteReader {
  offset = 0;
  readonly #it: AsyncIterator<Uint8Array>;
  #pieces: Uint8Array[] = [];
  #buffered = 0;
  #isDone = false;

  constructor(source: ByteSource) {
    const iterable: AsyncIterable<Uint8Array> =
      Symbol.asyncIterator in source ? (source as AsyncIterable<Uint8Array>) : streamIterable(source as ReadableStream<Uint8Array>);
    this.#it = iterable[Symbol.asyncIterator]();
  }

  /** `n` bytes, or a promise of them when they are not buffered yet (so the hot path never awaits). */
  /** `what` names the part for a truncation error (a function: made only then, not for every chunk). */
  exact(n: number, what: string | (() => string)): Uint8Array | Promise<Uint8Array> {
    return this.#buffered >= n ? this.#take(n) : this.#fill(n, what);
  }

  /** `n` bytes into `out` at `at`, copied as they arrive: a large read never holds its bytes twice. */
  async readInto(out: Uint8Array, at: number, n: number, what: string): Promise<void> {
    let got = 0;
    while (got < n) {
      if (this.#buffered === 0 && !(await this.#pull())) {
        throw new InvalidExportError(`Cannot import: the export is truncated (it ends at byte ${this.offset}, inside ${what})`);
      }
      const take = Math.min(this.#buffered, n - got, this.#pieces[0]!.byteLength);
      out.set(this.#take(take), at + got);
      got += take;
    }
  }

  async #fill(n: number, what: string | (() => string)): Promise<Uint8Array> {
    while (this.#buffered < n) {
      if (!(await this.#pull())) {
        throw new InvalidExportError(
          `Cannot import: the export is truncated (it ends at byte ${this.offset + this.#buffered}, inside ${typeof what === "string" ? what : what()})`,
        );
      }
    }
    return this.#take(n);
  }

  #take(n: number): Uint8Array {
    this.offset += n;
    const first = this.#pieces[0]!;
    if (first.byteLength >= n) {
      const out = first.subarray(0, n);
      if (first.byteLength === n) this.#pieces.shift();
      else this.#pieces[0] = first.subarray(n);
      this.#buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const p = this.#pieces[0]!;
      const take = Math.min(p.byteLength, n - got);
      out.set(p.subarray(0, take), got);
      got += take;
      if (take === p.byteLength) this.#pieces.shift();
      else this.#pieces[0] = p.subarray(take);
    }
    this.#buffered -= n;
    return out;
  }

  async isAtEnd(): Promise<boolean> {
    while (this.#buffered === 0) if (!(await this.#pull())) return true;
    return false;
  }

  async #pull(): Promise<boolean> {
    if (this.#isDone) return false;
    const { value, done } = await this.#it.next();
    if (done) {
      this.#isDone = true;
      return false;
    }
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (bytes.byteLength > 0) {
      this.#pieces.push(bytes);
      this.#buffered += bytes.byteLength;
    }
    return true;
  }
}

async function* streamIterable(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const r = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      yield value;
    }
  } finally {
    r.releaseLock();
  }
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

/** Write `v` as a u32 BE at `at` (no DataView per frame). */
function setUint32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}
