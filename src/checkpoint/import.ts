/**
 * Reading an export file (export-format.ts) into the store and catalogue.
 *
 * Import reads a stream, validates the manifest before taking any chunk,
 * verifies every chunk, stages new ones in a writer (pinned against gc) and
 * commits them with the image in one transaction; any failure aborts the
 * writer, leaving the store as it was.
 */
import { failpoint } from "../debug/failpoints.ts";
import { HashTable } from "../image/hash-table.ts";
import { HASH_BYTES, hashEquals, sha256, toHex } from "../image/hash.ts";
import { applyManifestDelta } from "../image/manifest-delta.ts";
import { InvalidManifestError, LIMITS, MANIFEST_SHAPE, UnsupportedFormatError, decodeManifest, uniqueChunkRefs } from "../image/manifest.ts";
import { msgpackShape } from "../image/msgpack-bounds.ts";
import { MAX_CHUNK_BYTES } from "../store/chunk-store.ts";
import type { ChunkWorkers } from "../store/chunk-workers.ts";
import type { ClaimedChunk } from "../store/chunk-writer.ts";
import { ChunkMismatchError } from "../store/errors.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";
import { decodeSignatureBlock, type ImageSignature, SIGNATURE_BLOCK_BYTES } from "../trust/image-signature.ts";
import { Yielder } from "../yielder.ts";
import { ByteReader, type ByteSource } from "./_byte-reader.ts";
import {
  BATCH_BYTES,
  EXPORT_MAGIC,
  EXPORT_VERSION,
  FLAG_CHUNK_INDEXES,
  FLAG_MANIFEST_DELTA,
  FLAG_SIGNED,
  FRAME_CHUNK,
  FRAME_CHUNK_INDEX,
  FRAME_TRAILER,
  HEADER_BYTES,
  InvalidExportError,
  KNOWN_FLAGS,
  MissingParentError,
  getUint32,
  setUint32,
} from "./export-format.ts";
import { ReceivedPages } from "./received-pages.ts";

export type { ByteSource } from "./_byte-reader.ts";

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
        i = getUint32(ib, 0);
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
      const len = getUint32(fh, HASH_BYTES);
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
