/**
 * What an attacker does with the documented export format: take a real export,
 * edit its manifest, and write it back with every hash right (the image id, the
 * final hash), so it imports as valid. The chunks are kept as they are.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { decodeManifest, encodeManifest, type Manifest } from "../src/checkpoint/manifest.ts";

const HEADER_BYTES = 16;
const HASH = 32;

function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(new Bun.CryptoHasher("sha256").update(b).digest() as Uint8Array);
}

/** Rewrite export `from` into `to` with `edit` applied to its manifest; returns the new image id. */
export function rebuildExport(from: string, to: string, edit: (m: Manifest) => void): string {
  const buf = new Uint8Array(readFileSync(from));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const header = buf.subarray(0, HEADER_BYTES);
  const mlen = dv.getUint32(HEADER_BYTES);
  const mstart = HEADER_BYTES + 4 + HASH;
  const manifest = decodeManifest(buf.subarray(mstart, mstart + mlen));
  edit(manifest);
  const bytes = encodeManifest(manifest);
  const mhash = sha256(bytes);

  const final = new Bun.CryptoHasher("sha256");
  final.update(header);
  final.update(mhash);
  let at = mstart + mlen;
  const framesStart = at;
  while (buf[at] === 0x43) {
    final.update(buf.subarray(at + 1, at + 1 + HASH + 4));
    at += 1 + HASH + 4 + dv.getUint32(at + 1 + HASH);
  }
  if (buf[at] !== 0x54) throw new Error(`Not an export: no trailer at byte ${at}`);
  const frames = buf.subarray(framesStart, at);
  final.update(buf.subarray(at + 1, at + 17));
  const trailer = new Uint8Array(buf.subarray(at, at + 17 + HASH));
  trailer.set(new Uint8Array(final.digest() as Uint8Array), 17);

  const mhead = new Uint8Array(4 + HASH);
  new DataView(mhead.buffer).setUint32(0, bytes.byteLength);
  mhead.set(mhash, 4);
  writeFileSync(to, Buffer.concat([header, mhead, bytes, frames, trailer]));
  return Buffer.from(mhash).toString("hex");
}
