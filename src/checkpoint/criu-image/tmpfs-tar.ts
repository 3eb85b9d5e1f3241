/**
 * The contents of a pod's tmpfs mounts (/dev, /tmp), which CRIU keeps as a
 * gzipped tar (tmpfs-dev-N.tar.gz.img) and restores with `tar --extract` as
 * root. A pod cannot make device nodes (no CAP_MKNOD) and its /dev is not
 * nodev, so a device node there could only come from an edited image and
 * would give the pod the host's disks: refused, with names that leave the
 * directory and hard links that point out of it.
 */
import { gunzipSync } from "node:zlib";
import { CriuImageError } from "./errors.ts";

/** Files CRIU keeps tmpfs contents in. */
export const TMPFS_TAR = /^tmpfs(-dev)?-\d+\.tar\.gz\.img$/;
/** Unpacked bytes of one tmpfs archive: beyond this it is refused, not unpacked (a gzip bomb). */
export const MAX_TMPFS_BYTES = 2 ** 31;
/** Entries of one archive. */
export const MAX_TMPFS_ENTRIES = 1 << 20;

const BLOCK = 512;
const TYPE_NAMES: Record<string, string> = { "3": "character device", "4": "block device" };

/** Throws CriuImageError for an archive entry a pod's tmpfs can never hold; returns the entry count. */
export function checkTmpfsTar(name: string, gz: Uint8Array, maxBytes = MAX_TMPFS_BYTES): number {
  let tar: Uint8Array;
  try {
    tar = gunzipSync(gz, { maxOutputLength: maxBytes });
  } catch (e) {
    const why = (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? `it unpacks to more than ${maxBytes} bytes` : "it is not gzip data";
    throw new CriuImageError(`${name} is refused: ${why}`);
  }
  let at = 0;
  let count = 0;
  let longName: string | null = null;
  let longLink: string | null = null;
  while (at + BLOCK <= tar.byteLength) {
    const h = tar.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) break; // end of archive
    if (++count > MAX_TMPFS_ENTRIES) throw new CriuImageError(`${name} has more than ${MAX_TMPFS_ENTRIES} entries`);
    if (!checksumMatches(h)) throw new CriuImageError(`${name}: entry ${count} has a bad header checksum`);
    const type = String.fromCharCode(h[156]!) || "0";
    const size = octal(h.subarray(124, 136), name, count);
    const dataBlocks = Math.ceil(size / BLOCK) * BLOCK;
    if (at + BLOCK + dataBlocks > tar.byteLength) throw new CriuImageError(`${name}: entry ${count} runs past the end of the archive`);
    const data = tar.subarray(at + BLOCK, at + BLOCK + size);
    at += BLOCK + dataBlocks;
    // GNU long names and links, and pax headers, describe the next entry.
    if (type === "L" || type === "K") {
      const s = cString(data);
      if (type === "L") longName = s;
      else longLink = s;
      continue;
    }
    if (type === "x" || type === "g") {
      for (const [k, v] of paxRecords(data)) {
        if (k === "path") longName = v;
        if (k === "linkpath") longLink = v;
      }
      continue;
    }
    const prefix = cString(h.subarray(345, 500));
    const path = longName ?? (prefix ? `${prefix}/${cString(h.subarray(0, 100))}` : cString(h.subarray(0, 100)));
    const link = longLink ?? cString(h.subarray(157, 257));
    longName = longLink = null;
    const what = `${name} entry ${count} ${JSON.stringify(path.slice(0, 200))}`;
    if (TYPE_NAMES[type]) throw new CriuImageError(`${what} is a ${TYPE_NAMES[type]}; a pod cannot make device nodes, so its tmpfs never holds one`);
    if (!"0125 67".includes(type)) throw new CriuImageError(`${what} has tar type ${JSON.stringify(type)}, which CRIU's tar of a tmpfs never writes`);
    if (isEscaping(path)) throw new CriuImageError(`${what} leaves the tmpfs (an absolute path or "..")`);
    if (type === "1" && isEscaping(link)) throw new CriuImageError(`${what} is a hard link to ${JSON.stringify(link.slice(0, 200))}, outside the tmpfs`);
  }
  return count;
}

function isEscaping(p: string): boolean {
  return p.startsWith("/") || p.includes("\0") || p.split("/").includes("..");
}

function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return new TextDecoder().decode(end < 0 ? b : b.subarray(0, end));
}

function octal(b: Uint8Array, name: string, n: number): number {
  if (b[0]! & 0x80) throw new CriuImageError(`${name}: entry ${n} has a binary size, which CRIU's tar never writes for a tmpfs`);
  const s = cString(b).trim();
  if (!/^[0-7]*$/.test(s)) throw new CriuImageError(`${name}: entry ${n} has a size that is not octal`);
  return s ? Number.parseInt(s, 8) : 0;
}

function checksumMatches(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const s = cString(h.subarray(148, 156)).trim();
  return /^[0-7]+$/.test(s) && Number.parseInt(s, 8) === sum;
}

/** pax extended header records: "LEN key=value\n". */
function paxRecords(data: Uint8Array): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const text = new TextDecoder().decode(data);
  for (const line of text.split("\n")) {
    const m = /^\d+ ([^=]+)=(.*)$/.exec(line);
    if (m) out.push([m[1]!, m[2]!]);
  }
  return out;
}
