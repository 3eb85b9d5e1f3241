/**
 * What an attacker does with the documented export format: take a real export,
 * edit its manifest, and write it back with every hash right (the image id, the
 * final hash), so it imports as valid. The chunks are kept as they are; the
 * signature cannot be kept (it no longer matches), so the result is unsigned
 * and imports only with --trust.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { decodeManifest, encodeManifest, type Manifest } from "../src/image/manifest.ts";
import { buildExport, imageIdOfManifest, parseExport } from "./_export-file.ts";

/** Rewrite export `from` into `to` with `edit` applied to its manifest; returns the new image id. */
export function rebuildExport(from: string, to: string, edit: (m: Manifest) => void): string {
  const parts = parseExport(new Uint8Array(readFileSync(from)));
  const manifest = decodeManifest(parts.manifest);
  edit(manifest);
  const bytes = encodeManifest(manifest);
  writeFileSync(to, buildExport({ manifest: bytes, signature: null, chunks: parts.chunks }));
  return imageIdOfManifest(bytes);
}
