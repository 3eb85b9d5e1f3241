/**
 * An export file taken apart (docs/image-format.md) so a fuzzer can change any
 * part of it and put it back together with every hash recomputed: the chunk
 * hashes of a file it edited, the manifest hash (the image id), and the final
 * hash. Only then do mutations get past the integrity checks to the deeper
 * validation behind them.
 */
import { Packr } from "msgpackr";
import { sha256, toHex } from "../../src/image/hash.ts";
import { concatBytes } from "./protobuf.ts";

const HASH = 32;
const ZERO = new Uint8Array(HASH);
/** The manifest's own msgpack settings (src/image/manifest.ts). */
export const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** A raw manifest entry: the fields a fuzzer reads, anything else passes through. */
export type RawEntry = Record<string, unknown> & { path?: unknown; type?: unknown; size?: unknown; chunkSize?: unknown; chunks?: unknown };
export type RawManifest = Record<string, unknown>;

/** A decoded export: the manifest as plain data and the chunk bytes by hex hash. */
export interface ExportModel {
  manifest: RawManifest;
  chunks: Map<string, Uint8Array>;
}

/** The export's frames, each field editable; serialize() recomputes what is asked. */
export interface ExportLayout {
  header: Uint8Array;
  manifestBytes: Uint8Array;
  /** Written instead of the manifest's true length / hash. */
  manifestLength?: number;
  manifestHash?: Uint8Array;
  frames: Array<{ tag: number; hash: Uint8Array; length?: number; data: Uint8Array }>;
  trailerTag: number;
  trailerCount?: bigint;
  trailerBytes?: bigint;
  finalHash?: Uint8Array;
  trailing: Uint8Array;
  /** Stop the file after this many bytes (a truncation). */
  cutAt?: number;
}

export function parseExport(b: Uint8Array): ExportModel {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const mlen = dv.getUint32(16);
  const manifest = packr.unpack(b.subarray(52, 52 + mlen)) as RawManifest;
  const chunks = new Map<string, Uint8Array>();
  let at = 52 + mlen;
  // A signed export (header flag 1) has a 96-byte signature block after the manifest; edited exports go out unsigned.
  if (dv.getUint32(12) & 1) at += 96;
  while (b[at] === 0x43) {
    const len = dv.getUint32(at + 1 + HASH);
    chunks.set(toHex(b.subarray(at + 1, at + 1 + HASH)), b.slice(at + 5 + HASH, at + 5 + HASH + len));
    at += 5 + HASH + len;
  }
  if (b[at] !== 0x54) throw new Error(`Not a valid seed export: no trailer at byte ${at}`);
  return { manifest, chunks };
}

/** Every tree of a raw manifest that is a list of entries, with its name. */
export function rawTrees(m: RawManifest): Array<{ name: string; entries: RawEntry[] }> {
  const out: Array<{ name: string; entries: RawEntry[] }> = [];
  for (const k of ["criu", "rootfs", "base"]) if (Array.isArray(m[k])) out.push({ name: k, entries: m[k] as RawEntry[] });
  if (Array.isArray(m.volumes)) {
    for (const v of m.volumes as Array<Record<string, unknown>>) {
      if (v && Array.isArray(v.entries)) out.push({ name: `volume:${String(v.path)}`, entries: v.entries as RawEntry[] });
    }
  }
  return out;
}

function chunkList(e: RawEntry): Uint8Array {
  return e.chunks instanceof Uint8Array ? e.chunks : new Uint8Array();
}

/** A file entry's bytes, from the model's chunks (zeros for the zero marker and for chunks it lacks). */
export function fileBytes(model: ExportModel, e: RawEntry): Uint8Array {
  const list = chunkList(e);
  const size = Number(e.size);
  const cs = Number(e.chunkSize);
  const out = new Uint8Array(Math.max(0, Math.min(size, 64 << 20)));
  for (let i = 0; i * HASH < list.byteLength; i++) {
    const data = model.chunks.get(toHex(list.subarray(i * HASH, (i + 1) * HASH)));
    if (data && i * cs < out.byteLength) out.set(data.subarray(0, out.byteLength - i * cs), i * cs);
  }
  return out;
}

/** Replace a file entry's bytes: chunked again at its chunk size, hashed, added to the model. */
export function setFileBytes(model: ExportModel, e: RawEntry, bytes: Uint8Array): void {
  const cs = typeof e.chunkSize === "number" && e.chunkSize >= 4096 && (e.chunkSize & (e.chunkSize - 1)) === 0 ? e.chunkSize : 65536;
  const n = Math.ceil(bytes.byteLength / cs);
  const list = new Uint8Array(n * HASH);
  for (let i = 0; i < n; i++) {
    const data = bytes.slice(i * cs, Math.min(bytes.byteLength, (i + 1) * cs));
    if (data.every((x) => x === 0)) continue; // the zero marker
    const h = sha256(data);
    list.set(h, i * HASH);
    model.chunks.set(toHex(h), data);
  }
  e.size = bytes.byteLength;
  e.chunkSize = cs;
  e.chunks = list;
}

/** The frames autopod's exporter would write for this model: every referenced chunk it has, once, in first-use order. */
export function layoutOf(model: ExportModel): ExportLayout {
  const manifestBytes = encodeRaw(model.manifest);
  const header = new Uint8Array(16);
  header.set(new TextEncoder().encode("APODIMG\0"));
  new DataView(header.buffer).setUint32(8, 1);
  const seen = new Set<string>();
  const frames: ExportLayout["frames"] = [];
  for (const t of rawTrees(model.manifest)) {
    for (const e of t.entries) {
      if (e?.type !== "file") continue;
      const list = chunkList(e);
      for (let i = 0; i + HASH <= list.byteLength; i += HASH) {
        const h = list.subarray(i, i + HASH);
        const hex = toHex(h);
        if (seen.has(hex) || h.every((x, k) => x === ZERO[k])) continue;
        seen.add(hex);
        const data = model.chunks.get(hex);
        if (data) frames.push({ tag: 0x43, hash: h.slice(), data });
      }
    }
  }
  return { header, manifestBytes, frames, trailerTag: 0x54, trailing: new Uint8Array() };
}

export function encodeRaw(m: RawManifest): Uint8Array {
  const b = packr.pack(m);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The export file's bytes; every hash and count not overridden in the layout is the true one. */
export function serialize(l: ExportLayout): Uint8Array {
  const final = new Bun.CryptoHasher("sha256");
  const parts: Uint8Array[] = [l.header];
  final.update(l.header);
  const mh = new Uint8Array(4 + HASH);
  const mdv = new DataView(mh.buffer);
  mdv.setUint32(0, (l.manifestLength ?? l.manifestBytes.byteLength) >>> 0);
  const mhash = l.manifestHash ?? sha256(l.manifestBytes);
  mh.set(mhash.subarray(0, HASH), 4);
  final.update(mh.subarray(4));
  parts.push(mh, l.manifestBytes);
  let count = 0n;
  let bytes = 0n;
  for (const f of l.frames) {
    const fh = new Uint8Array(5 + HASH);
    fh[0] = f.tag;
    fh.set(f.hash.subarray(0, HASH), 1);
    new DataView(fh.buffer).setUint32(1 + HASH, (f.length ?? f.data.byteLength) >>> 0);
    final.update(fh.subarray(1));
    parts.push(fh, f.data);
    count++;
    bytes += BigInt(f.data.byteLength);
  }
  const tr = new Uint8Array(17 + HASH);
  tr[0] = l.trailerTag;
  const tdv = new DataView(tr.buffer);
  tdv.setBigUint64(1, BigInt.asUintN(64, l.trailerCount ?? count));
  tdv.setBigUint64(9, BigInt.asUintN(64, l.trailerBytes ?? bytes));
  final.update(tr.subarray(1, 17));
  tr.set(l.finalHash ?? new Uint8Array(final.digest() as Uint8Array), 17);
  parts.push(tr, l.trailing);
  const out = concatBytes(parts);
  return l.cutAt === undefined ? out : out.subarray(0, Math.min(l.cutAt, out.byteLength));
}

/** The id the input's manifest claims (the hex hash written in the file). */
export function claimedId(l: ExportLayout): string {
  return toHex(l.manifestHash ?? sha256(l.manifestBytes));
}

export { sha256, toHex };
