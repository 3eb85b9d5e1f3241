/**
 * Take an export file apart and put it back together with correct hashes, the
 * way an attacker who read docs/image-format.md would: for tests that edit a
 * manifest or its signature and check that autopod still refuses it.
 */
import { createHash } from "node:crypto";

export interface ExportParts {
  manifest: Uint8Array;
  /** The 96-byte signature block (public key, signature), or null. */
  signature: Uint8Array | null;
  chunks: Array<{ hash: Uint8Array; data: Uint8Array }>;
}

const sha = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

export function parseExport(b: Uint8Array): ExportParts {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const flags = dv.getUint32(12);
  const mlen = dv.getUint32(16);
  const manifest = b.slice(52, 52 + mlen);
  let off = 52 + mlen;
  let signature: Uint8Array | null = null;
  if (flags & 1) {
    signature = b.slice(off, off + 96);
    off += 96;
  }
  const chunks: ExportParts["chunks"] = [];
  while (b[off] === 0x43) {
    const hash = b.slice(off + 1, off + 33);
    const len = dv.getUint32(off + 33);
    chunks.push({ hash, data: b.slice(off + 37, off + 37 + len) });
    off += 37 + len;
  }
  if (b[off] !== 0x54) throw new Error(`no trailer at ${off}`);
  return { manifest, signature, chunks };
}

/** A valid export of these parts: manifest hash, frame hashes, counts and the final hash all recomputed. */
export function buildExport(p: ExportParts): Uint8Array {
  const parts: Uint8Array[] = [];
  const final = createHash("sha256");
  const header = new Uint8Array(16);
  header.set(new TextEncoder().encode("APODIMG\0"));
  const hv = new DataView(header.buffer);
  hv.setUint32(8, 1);
  hv.setUint32(12, p.signature ? 1 : 0);
  final.update(header);
  const mhead = new Uint8Array(36);
  new DataView(mhead.buffer).setUint32(0, p.manifest.byteLength);
  const mhash = sha(p.manifest);
  mhead.set(mhash, 4);
  final.update(mhash);
  parts.push(header, mhead, p.manifest);
  if (p.signature) {
    final.update(p.signature);
    parts.push(p.signature);
  }
  let bytes = 0;
  for (const c of p.chunks) {
    const fh = new Uint8Array(37);
    fh[0] = 0x43;
    fh.set(c.hash, 1);
    new DataView(fh.buffer).setUint32(33, c.data.byteLength);
    final.update(fh.subarray(1));
    parts.push(fh, c.data);
    bytes += c.data.byteLength;
  }
  const trailer = new Uint8Array(49);
  trailer[0] = 0x54;
  const tv = new DataView(trailer.buffer);
  tv.setBigUint64(1, BigInt(p.chunks.length));
  tv.setBigUint64(9, BigInt(bytes));
  final.update(trailer.subarray(1, 17));
  trailer.set(new Uint8Array(final.digest()), 17);
  parts.push(trailer);
  return new Uint8Array(Buffer.concat(parts));
}

/** The image id of manifest bytes. */
export function imageIdOfManifest(manifest: Uint8Array): string {
  return Buffer.from(sha(manifest)).toString("hex");
}
