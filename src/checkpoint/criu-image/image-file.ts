/**
 * One CRIU image file: a magic header, then entries, each a little-endian
 * u32 length and that many bytes of one protobuf message (CRIU's
 * criu/protobuf.c, lib/pycriu/images/images.py). Most files start with
 * IMG_COMMON_MAGIC and then their own magic; inventory.img has only its own;
 * stats and irmap files start with IMG_SERVICE_MAGIC.
 */
import { CriuImageError } from "./errors.ts";
import { decodeMessage, type ProtoMessage } from "./protobuf.ts";

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

/** The magics of the files the checker reads (criu/include/magic.h). */
export const MAGIC = {
  inventory: 0x58313116,
  pstree: 0x50273030,
  core: 0x55053847,
  mnts: 0x55563928,
  files: 0x56303138,
  fdinfo: 0x56213732,
  regFiles: 0x50363636,
  fs: 0x51403912,
  mm: 0x57492820,
  ids: 0x54432030,
  creds: 0x54023547,
  pagemap: 0x56084025,
} as const;

/** Entries per file: far above what a pod has (a mountpoints file of 10,000 mounts is absurd). */
export const MAX_ENTRIES = 1 << 20;
/** Bytes per entry: CRIU's biggest messages (a core with extended registers) are a few KiB. */
export const MAX_ENTRY_BYTES = 16 << 20;

export interface CriuImageFile {
  name: string;
  magic: number;
  /** The entries' raw protobuf bytes (views into the file). */
  entries: Uint8Array[];
}

/** Split a CRIU image file into its entries, checking its magic. */
export function readImageFile(name: string, bytes: Uint8Array, magic: number): CriuImageFile {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) throw new CriuImageError(`${name} is ${bytes.byteLength} bytes, too short for a CRIU image`);
  let at = 0;
  let first = dv.getUint32(0, true);
  at = 4;
  if (first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC) {
    if (bytes.byteLength < 8) throw new CriuImageError(`${name} is cut short after its first magic`);
    first = dv.getUint32(4, true);
    at = 8;
  }
  if (first !== magic) {
    throw new CriuImageError(`${name} has magic 0x${first.toString(16).padStart(8, "0")}, not 0x${magic.toString(16).padStart(8, "0")} as such a file must`);
  }
  const entries: Uint8Array[] = [];
  while (at < bytes.byteLength) {
    if (bytes.byteLength - at < 4) throw new CriuImageError(`${name}: entry ${entries.length + 1} is cut short in its length`);
    const len = dv.getUint32(at, true);
    at += 4;
    if (len > MAX_ENTRY_BYTES) throw new CriuImageError(`${name}: entry ${entries.length + 1} claims ${len} bytes, over the limit of ${MAX_ENTRY_BYTES}`);
    if (len > bytes.byteLength - at) {
      throw new CriuImageError(`${name}: entry ${entries.length + 1} claims ${len} bytes but only ${bytes.byteLength - at} are left`);
    }
    if (entries.length >= MAX_ENTRIES) throw new CriuImageError(`${name}: more than ${MAX_ENTRIES} entries`);
    entries.push(bytes.subarray(at, at + len));
    at += len;
  }
  return { name, magic, entries };
}

/** Every entry of a file decoded as one protobuf message, named "<file> entry N" in errors. */
export function readMessages(name: string, bytes: Uint8Array, magic: number): ProtoMessage[] {
  return readImageFile(name, bytes, magic).entries.map((e, i) => decodeMessage(e, `${name} entry ${i + 1}`));
}
