import { InvalidArgumentError } from "../../errors.ts";

/**
 * The CRIU bundle as the binary carries it: one zstd-compressed blob of
 *   "AUTOPOD-CRIU-BUNDLE 1\n", a 4-byte big-endian header length, the JSON header, then every file's bytes in header order.
 * The header names each file (a relative path of plain names), its mode and size, and its SHA-256, which the installer
 * checks again on what it wrote to disk.
 */
export interface BundleFile {
  /** Relative path inside the bundle, e.g. "bin/criu", "lib/libnl-3.so.200". */
  path: string;
  /** Permission bits (0o755 or 0o644). */
  mode: number;
  size: number;
  sha256: string;
}

export interface BundleHeader {
  /** CRIU's version, as `criu --version` prints it (e.g. "4.2.1"). */
  criuVersion: string;
  /** The GitID it prints ("autopod-" and the patch set's id). */
  gitId: string;
  files: BundleFile[];
}

const MAGIC = "AUTOPOD-CRIU-BUNDLE 1\n";
/** Plain names only: no "..", no absolute path, no empty part. */
const PATH_RE = /^(?:bin|lib)\/[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const MAX_FILES = 256;
const MAX_TOTAL = 512 << 20;

export function packBundle(header: Omit<BundleHeader, "files">, files: ReadonlyArray<{ path: string; mode: number; bytes: Uint8Array }>): Uint8Array {
  const meta: BundleHeader = {
    ...header,
    files: files.map((f) => ({ path: f.path, mode: f.mode, size: f.bytes.length, sha256: sha256Hex(f.bytes) })),
  };
  validateHeader(meta);
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, json.length);
  const raw = Buffer.concat([new TextEncoder().encode(MAGIC), len, json, ...files.map((f) => f.bytes)]);
  return Bun.zstdCompressSync(raw, { level: 19 });
}

/** Decompress and check a bundle: its header, and each file's size and SHA-256. Throws InvalidArgumentError on anything wrong. */
export function unpackBundle(blob: Uint8Array): { header: BundleHeader; files: Array<BundleFile & { bytes: Uint8Array }> } {
  let raw: Uint8Array;
  try {
    raw = Bun.zstdDecompressSync(blob);
  } catch (e) {
    throw new InvalidArgumentError(`The CRIU bundle does not decompress: ${(e as Error).message}`);
  }
  const magic = new TextEncoder().encode(MAGIC);
  if (raw.length < magic.length + 4 || !Buffer.from(raw.subarray(0, magic.length)).equals(Buffer.from(magic))) {
    throw new InvalidArgumentError("The CRIU bundle does not start with its magic line");
  }
  const len = new DataView(raw.buffer, raw.byteOffset + magic.length, 4).getUint32(0);
  let off = magic.length + 4;
  if (off + len > raw.length) throw new InvalidArgumentError(`The CRIU bundle's header length ${len} is past its end`);
  let header: BundleHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(raw.subarray(off, off + len))) as BundleHeader;
  } catch {
    throw new InvalidArgumentError("The CRIU bundle's header is not JSON");
  }
  validateHeader(header);
  off += len;
  const files = header.files.map((f) => {
    if (off + f.size > raw.length) throw new InvalidArgumentError(`The CRIU bundle is cut short in "${f.path}"`);
    const bytes = raw.subarray(off, off + f.size);
    off += f.size;
    const got = sha256Hex(bytes);
    if (got !== f.sha256) throw new InvalidArgumentError(`The CRIU bundle's "${f.path}" has SHA-256 ${got}, its header says ${f.sha256}`);
    return { ...f, bytes };
  });
  if (off !== raw.length) throw new InvalidArgumentError(`The CRIU bundle has ${raw.length - off} bytes after its last file`);
  return { header, files };
}

export function validateHeader(h: BundleHeader): void {
  if (typeof h !== "object" || h === null) throw new InvalidArgumentError("The CRIU bundle's header is not an object");
  if (typeof h.criuVersion !== "string" || !/^\d+\.\d+(\.\d+)?$/.test(h.criuVersion)) {
    throw new InvalidArgumentError(`The CRIU bundle's version "${String(h.criuVersion)}" is not a version`);
  }
  if (typeof h.gitId !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(h.gitId)) {
    throw new InvalidArgumentError(`The CRIU bundle's GitID "${String(h.gitId)}" is not valid`);
  }
  if (!Array.isArray(h.files) || h.files.length === 0 || h.files.length > MAX_FILES) {
    throw new InvalidArgumentError(`The CRIU bundle must list 1 to ${MAX_FILES} files`);
  }
  const seen = new Set<string>();
  let total = 0;
  for (const f of h.files) {
    if (typeof f.path !== "string" || !PATH_RE.test(f.path)) throw new InvalidArgumentError(`The CRIU bundle's file path "${String(f.path)}" is not allowed`);
    if (seen.has(f.path)) throw new InvalidArgumentError(`The CRIU bundle lists "${f.path}" twice`);
    seen.add(f.path);
    if (f.mode !== 0o755 && f.mode !== 0o644)
      throw new InvalidArgumentError(
        `The CRIU bundle's "${f.path}" has mode ${typeof f.mode === "number" ? f.mode.toString(8) : String(f.mode)}, not 755 or 644`,
      );
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw new InvalidArgumentError(`The CRIU bundle's "${f.path}" has size ${String(f.size)}`);
    if (typeof f.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256)) throw new InvalidArgumentError(`The CRIU bundle's "${f.path}" has no SHA-256`);
    total += f.size;
  }
  if (total > MAX_TOTAL) throw new InvalidArgumentError(`The CRIU bundle holds ${total} bytes, more than ${MAX_TOTAL}`);
  if (!seen.has("bin/criu")) throw new InvalidArgumentError('The CRIU bundle has no "bin/criu"');
}

export function sha256Hex(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}
