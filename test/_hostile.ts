/**
 * Hostile images, built the way an attacker would: a real export file, its
 * manifest or CRIU files edited, then re-packed with every hash right (chunk
 * hashes, manifest hash, final hash), so it imports as valid and only the
 * checks at restore stand between it and the host.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { EXPORT_MAGIC, EXPORT_VERSION } from "../src/checkpoint/export-format.ts";
import { chunkCount, chunkHash, chunkLength, decodeManifest, encodeManifest, type FileEntry, type Manifest, uniqueChunkRefs } from "../src/image/manifest.ts";
import { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC } from "../src/checkpoint/criu-image/image-file.ts";
import { decodeMessage, ProtoMessage } from "../src/checkpoint/criu-image/protobuf.ts";
import { HASH_BYTES, isZeroHash, sha256, toHex } from "../src/image/hash.ts";

/** An export file taken apart: its manifest and every chunk it carries, by hex hash. */
export interface OpenedExport {
  manifest: Manifest;
  chunks: Map<string, Uint8Array>;
}

/** Parse an export file (trusting it: it is our own, from a real agent). */
export function openExport(file: string): OpenedExport {
  const b = readFileSync(file);
  if (b.subarray(0, 8).toString("latin1") !== EXPORT_MAGIC) throw new Error(`${file} is not an export`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 16;
  const mlen = dv.getUint32(at);
  at += 4 + HASH_BYTES;
  const manifest = decodeManifest(new Uint8Array(b.subarray(at, at + mlen)));
  at += mlen;
  // A signed export (header flag 1) carries a 96-byte signature block here; rebuilt exports go out unsigned.
  if (dv.getUint32(12) & 1) at += 96;
  const chunks = new Map<string, Uint8Array>();
  while (b[at] === 0x43) {
    const hash = b.subarray(at + 1, at + 1 + HASH_BYTES);
    const len = dv.getUint32(at + 1 + HASH_BYTES);
    const start = at + 1 + HASH_BYTES + 4;
    chunks.set(toHex(hash), new Uint8Array(b.subarray(start, start + len)));
    at = start + len;
  }
  if (b[at] !== 0x54) throw new Error(`${file}: no trailer at byte ${at}`);
  return { manifest, chunks };
}

/** The bytes of one file of a tree, from the export's chunks. */
export function fileBytes(x: OpenedExport, e: FileEntry): Uint8Array {
  const out = new Uint8Array(e.size);
  for (let i = 0; i < chunkCount(e); i++) {
    const h = chunkHash(e, i);
    if (isZeroHash(h)) continue;
    const c = x.chunks.get(toHex(h));
    if (!c) throw new Error(`chunk ${toHex(h)} of ${e.path} is not in the export`);
    out.set(c.subarray(0, chunkLength(e, i)), i * e.chunkSize);
  }
  return out;
}

/** Replace a regular file's content in an entry (re-chunked, hashed, its chunks added to the export). */
export function withContent(x: OpenedExport, e: FileEntry, bytes: Uint8Array): FileEntry {
  const chunkSize = 4096;
  const n = Math.ceil(bytes.byteLength / chunkSize);
  const chunks = new Uint8Array(n * HASH_BYTES);
  for (let i = 0; i < n; i++) {
    const piece = bytes.subarray(i * chunkSize, Math.min(bytes.byteLength, (i + 1) * chunkSize));
    const h = sha256(piece);
    chunks.set(h, i * HASH_BYTES);
    x.chunks.set(toHex(h), new Uint8Array(piece));
  }
  return { ...e, type: "file", size: bytes.byteLength, chunkSize, chunks, target: undefined };
}

/** The CRIU file of an export by name (e.g. "mountpoints-13.img"), or by a pattern. */
export function criuFile(x: OpenedExport, name: string | RegExp): FileEntry {
  const e = x.manifest.criu.find((f) => (typeof name === "string" ? f.path === name : name.test(f.path)));
  if (!e) throw new Error(`no CRIU file ${name} in the export (it has ${x.manifest.criu.map((f) => f.path).join(", ")})`);
  return e;
}

/** Replace one CRIU file's content. */
export function replaceCriuFile(x: OpenedExport, name: string | RegExp, bytes: Uint8Array): void {
  const e = criuFile(x, name);
  x.manifest = { ...x.manifest, criu: x.manifest.criu.map((f) => (f === e ? withContent(x, e, bytes) : f)) };
}

/** Write the (edited) export with correct hashes throughout; returns its image id. */
export function writeExport(x: OpenedExport, file: string): string {
  const m = { ...x.manifest };
  // undefined optional fields do not survive msgpack: drop them so the manifest validates.
  const clean = (list: FileEntry[]) => list.map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as FileEntry);
  m.criu = clean(m.criu);
  m.rootfs = clean(m.rootfs);
  if (m.base) m.base = clean(m.base);
  m.volumes = m.volumes.map((v) => ({ ...v, entries: clean(v.entries) }));
  const manifestBytes = encodeManifest(m);
  const final = new Bun.CryptoHasher("sha256");
  const parts: Uint8Array[] = [];
  const header = new Uint8Array(16);
  header.set(new TextEncoder().encode(EXPORT_MAGIC));
  new DataView(header.buffer).setUint32(8, EXPORT_VERSION);
  final.update(header);
  parts.push(header);
  const mhead = new Uint8Array(4 + HASH_BYTES);
  new DataView(mhead.buffer).setUint32(0, manifestBytes.byteLength);
  const mhash = sha256(manifestBytes);
  mhead.set(mhash, 4);
  final.update(mhash);
  parts.push(mhead, manifestBytes);
  let bytes = 0;
  const refs = uniqueChunkRefs(m);
  for (const r of refs) {
    const data = x.chunks.get(toHex(r.hash));
    if (!data) throw new Error(`chunk ${toHex(r.hash)} of ${r.tree}/${r.path} is missing`);
    const fh = new Uint8Array(1 + HASH_BYTES + 4);
    fh[0] = 0x43;
    fh.set(r.hash, 1);
    new DataView(fh.buffer).setUint32(1 + HASH_BYTES, data.byteLength);
    final.update(fh.subarray(1));
    parts.push(fh, data);
    bytes += data.byteLength;
  }
  const trailer = new Uint8Array(1 + 16 + HASH_BYTES);
  trailer[0] = 0x54;
  const tv = new DataView(trailer.buffer);
  tv.setBigUint64(1, BigInt(refs.length));
  tv.setBigUint64(9, BigInt(bytes));
  final.update(trailer.subarray(1, 17));
  trailer.set(new Uint8Array(final.digest() as Uint8Array), 17);
  parts.push(trailer);
  writeFileSync(file, Buffer.concat(parts));
  return toHex(mhash);
}

// --- CRIU image files: decode, edit, encode back -------------------------------------------

function varint(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return out;
}

/** Encode a message's fields back to the wire format, in field-number order. */
export function encodeMessage(m: ProtoMessage): Uint8Array {
  const out: number[] = [];
  for (const n of [...m.fields.keys()].sort((a, b) => a - b)) {
    for (const v of m.fields.get(n)!) {
      out.push(...varint(BigInt((n << 3) | v.wire)));
      if (v.wire === 0) out.push(...varint(v.value));
      else if (v.wire === 1) {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigUint64(0, v.value, true);
        out.push(...b);
      } else if (v.wire === 5) {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, v.value, true);
        out.push(...b);
      } else if (v.wire === 2) {
        out.push(...varint(BigInt(v.value.byteLength)), ...v.value);
      }
    }
  }
  return new Uint8Array(out);
}

/** Set a field to one varint, string or embedded message (or remove it with undefined). */
export function setField(m: ProtoMessage, n: number, value: number | bigint | string | ProtoMessage | Uint8Array | undefined): void {
  if (value === undefined) m.fields.delete(n);
  else if (typeof value === "number" || typeof value === "bigint") m.fields.set(n, [{ wire: 0, value: BigInt(value) }]);
  else if (typeof value === "string") m.fields.set(n, [{ wire: 2, value: new TextEncoder().encode(value) }]);
  else if (value instanceof ProtoMessage) m.fields.set(n, [{ wire: 2, value: encodeMessage(value) }]);
  else m.fields.set(n, [{ wire: 2, value }]);
}

/** A CRIU image file's entries as messages, and a way to write it back with its own header. */
export function editImageFile(bytes: Uint8Array, edit: (entries: ProtoMessage[]) => ProtoMessage[]): Uint8Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = dv.getUint32(0, true) === IMG_COMMON_MAGIC || dv.getUint32(0, true) === IMG_SERVICE_MAGIC ? 8 : 4;
  const entries: ProtoMessage[] = [];
  for (let at = headerBytes; at < bytes.byteLength; ) {
    const len = dv.getUint32(at, true);
    entries.push(decodeMessage(bytes.subarray(at + 4, at + 4 + len), "edit"));
    at += 4 + len;
  }
  const parts: Uint8Array[] = [bytes.subarray(0, headerBytes)];
  for (const m of edit(entries)) {
    const body = encodeMessage(m);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, body.byteLength, true);
    parts.push(len, body);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Edit one CRIU file of an opened export through its decoded entries. */
export function editCriuFile(x: OpenedExport, name: string | RegExp, edit: (entries: ProtoMessage[]) => ProtoMessage[]): void {
  replaceCriuFile(x, name, editImageFile(fileBytes(x, criuFile(x, name)), edit));
}
