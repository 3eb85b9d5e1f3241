/**
 * The image manifest: what a checkpoint is made of. msgpack on disk and on the
 * wire, validated with zod plus the path and size rules below whenever it is
 * read. The image id is the hex SHA-256 of the manifest's bytes. Format:
 * docs/image-format.md.
 */
import { Packr } from "msgpackr";
import path from "node:path";
import { z } from "zod";
import { InvalidArgumentError } from "../errors.ts";
import { HashTable } from "./hash-table.ts";
import { HASH_BYTES, type Hash, sha256, toHex } from "./hash.ts";
import { msgpackShape } from "./msgpack-bounds.ts";

/** The manifest format this code writes and the only one it reads. */
export const FORMAT_VERSION = 1;
/** Memory pages, and the chunk size of `pages-*.img`. */
export const PAGE_SIZE = 4096;

/** Caps that make absurd manifests fail validation instead of exhausting the host. */
export const LIMITS = {
  manifestBytes: 256 << 20,
  // A decoded entry costs about 2 KB and 15 us to validate: 1M entries is a very large root file system
  // (a whole Debian install is 50-100k), and bounds a hostile manifest to about 2 GB and 15 s.
  entries: 1_000_000,
  fileBytes: 2 ** 44, // 16 TiB
  totalBytes: 2 ** 46, // 64 TiB
  pathBytes: 4096,
  nameBytes: 255,
  symlinkTargetBytes: 4095,
  minChunkSize: 4096,
  maxChunkSize: 16 << 20,
  volumes: 256,
  cpuFlags: 4096,
  stringBytes: 65536,
} as const;

/** The manifest was malformed or hostile; nothing was changed. */
export class InvalidManifestError extends InvalidArgumentError {
  override name = "InvalidManifestError";
}

/** The manifest (or export) is of a format version this autopod does not read. */
export class UnsupportedFormatError extends InvalidArgumentError {
  override name = "UnsupportedFormatError";
  readonly version: unknown;
  constructor(what: string, version: unknown, supported: number) {
    super(`Unsupported ${what} format version ${JSON.stringify(version)}: this autopod reads version ${supported}`);
    this.version = version;
  }
}

const u32 = z.number().int().min(0).max(0xffff_ffff);
const shortString = z.string().max(LIMITS.stringBytes);

const EntrySchema = z
  .object({
    path: z.string().max(LIMITS.pathBytes),
    type: z.enum(["file", "dir", "symlink", "hardlink", "whiteout", "fifo"]),
    mode: z.number().int().min(0).max(0o7777),
    uid: u32,
    gid: u32,
    mtimeMs: z.number(),
    size: z.number().int().min(0).max(LIMITS.fileBytes),
    /** Bytes per chunk for files (the last may be shorter); 0 otherwise. */
    chunkSize: z.number().int().min(0).max(LIMITS.maxChunkSize),
    /** Concatenated 32-byte chunk hashes; all zeros marks a chunk of zeros, not stored. */
    chunks: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes"),
    /** Symlink target, or for a hardlink the path of the file it links to. */
    target: z.string().max(LIMITS.symlinkTargetBytes).optional(),
    /** A directory of an overlayfs upper layer that hides the lower one's contents. */
    opaque: z.boolean().optional(),
  })
  .strict();

/** One file, directory, symlink or hard link of a captured tree. */
export type FileEntry = z.infer<typeof EntrySchema>;
export type EntryType = FileEntry["type"];

/** The pod as it was specified: checked loosely, since the pods feature owns its schema. */
const PodSpecSchema = z.looseObject({
  name: z.string().min(1).max(253),
  command: z.array(shortString).max(4096),
  env: z.record(shortString, shortString).optional(),
  ip: shortString.optional(),
  hostname: shortString.optional(),
  limits: z.record(shortString, z.unknown()).optional(),
  volumes: z.array(z.unknown()).max(LIMITS.volumes).optional(),
  rootfs: shortString.optional(),
});
export type PodSpec = z.infer<typeof PodSpecSchema>;

const VolumeSchema = z
  .object({
    /** Where the volume is mounted inside the pod (absolute). */
    path: z.string().max(LIMITS.pathBytes),
    entries: z.array(EntrySchema).max(LIMITS.entries),
  })
  .strict();
export type VolumeSection = z.infer<typeof VolumeSchema>;

const ManifestSchema = z
  .object({
    format: z.literal(FORMAT_VERSION),
    autopodVersion: shortString,
    criuVersion: shortString.nullable(),
    kernelRelease: shortString,
    cpuFlags: z.array(z.string().max(64)).max(LIMITS.cpuFlags),
    createdAt: z.iso.datetime(),
    parent: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .nullable(),
    pod: PodSpecSchema,
    /** The CRIU image set (pages-*.img chunked by page). */
    criu: z.array(EntrySchema).max(LIMITS.entries),
    /** The pod's writable root file system layer (an overlayfs upper layer, or the whole root when the pod runs on a copy). */
    rootfs: z.array(EntrySchema).max(LIMITS.entries),
    /** The read-only base the layer sits on, so the image restores on a host that lacks it (stored once across pods). */
    base: z.array(EntrySchema).max(LIMITS.entries).optional(),
    volumes: z.array(VolumeSchema).max(LIMITS.volumes),
  })
  .strict();

export type Manifest = z.infer<typeof ManifestSchema>;

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Validate and encode; the result's SHA-256 is the image id. */
export function encodeManifest(manifest: Manifest): Uint8Array {
  const checked = validateManifest(manifest);
  const bytes = packr.pack(checked);
  if (bytes.byteLength > LIMITS.manifestBytes) {
    throw new InvalidManifestError(`Invalid manifest: it encodes to ${bytes.byteLength} bytes; the limit is ${LIMITS.manifestBytes}`);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The most a manifest's msgpack may hold, counted before it is decoded (src/checkpoint/msgpack-bounds.ts). */
export const MANIFEST_SHAPE = {
  maxContainers: LIMITS.entries + 2 * LIMITS.volumes + 64,
  maxValues: LIMITS.entries * 28 + 1_000_000,
  maxDepth: 16,
  maxLength: LIMITS.entries,
} as const;

/** Decode and fully validate manifest bytes (from disk, an export or a peer). */
export function decodeManifest(bytes: Uint8Array): Manifest {
  if (bytes.byteLength > LIMITS.manifestBytes) {
    throw new InvalidManifestError(`Invalid manifest: ${bytes.byteLength} bytes is over the limit of ${LIMITS.manifestBytes}`);
  }
  // Counted before decoding: a hostile manifest is refused by its shape, before msgpackr allocates any of it.
  const shape = msgpackShape(bytes, MANIFEST_SHAPE);
  if ("problem" in shape) throw new InvalidManifestError(`Invalid manifest: ${shape.problem}`);
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (e) {
    throw new InvalidManifestError("Invalid manifest: it is not valid msgpack", { cause: e });
  }
  return validateManifest(raw);
}

/** The image id of encoded manifest bytes: hex SHA-256. */
export function imageIdOf(manifestBytes: Uint8Array): string {
  return toHex(sha256(manifestBytes));
}

/** zod shape, then format version, paths, links, chunk lists and caps. */
export function validateManifest(raw: unknown): Manifest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InvalidManifestError("Invalid manifest: it is not a map");
  }
  const format = (raw as { format?: unknown }).format;
  if (typeof format !== "number") throw new InvalidManifestError("Invalid manifest: it has no format version");
  if (format !== FORMAT_VERSION) throw new UnsupportedFormatError("manifest", format, FORMAT_VERSION);
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidManifestError(`Invalid manifest: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const m = parsed.data;
  let entries = 0;
  let total = 0;
  const count = (list: FileEntry[], section: string) => {
    entries += list.length;
    if (entries > LIMITS.entries) throw new InvalidManifestError(`Invalid manifest: more than ${LIMITS.entries} entries`);
    total += checkEntries(list, section);
    if (total > LIMITS.totalBytes) throw new InvalidManifestError(`Invalid manifest: its files add up to more than ${LIMITS.totalBytes} bytes`);
  };
  count(m.criu, "criu");
  count(m.rootfs, "rootfs");
  if (m.base) count(m.base, "base");
  const volumePaths = new Set<string>();
  for (const v of m.volumes) {
    const p = v.path;
    if (!p.startsWith("/") || p.includes("\0") || path.posix.normalize(p) !== p || p.split("/").includes("..") || p === "/") {
      throw new InvalidManifestError(`Invalid manifest: volume path "${p}" must be absolute and normalized, not "/"`);
    }
    if (volumePaths.has(p)) throw new InvalidManifestError(`Invalid manifest: volume "${p}" appears twice`);
    volumePaths.add(p);
    count(v.entries, `volume ${p}`);
  }
  return m;
}

/** Why a manifest path is unsafe, or undefined when it is fine. */
export function pathProblem(p: string): string | undefined {
  if (p === ".") return undefined;
  if (p.length === 0) return "it is empty";
  if (p.includes("\0")) return "it contains a NUL byte";
  if (p.startsWith("/")) return "it is absolute";
  if (Buffer.byteLength(p) > LIMITS.pathBytes) return "it is too long";
  for (const part of p.split("/")) {
    if (part === "") return "it has an empty component";
    if (part === "..") return 'it has a ".." component';
    if (part === ".") return 'it has a "." component';
    if (Buffer.byteLength(part) > LIMITS.nameBytes) return "a component is too long";
  }
  return undefined;
}

/** Check one tree's entries (paths, links, chunk lists); returns the sum of its file sizes. Throws InvalidManifestError. */
export function checkEntries(list: FileEntry[], section: string): number {
  const byPath = new Map<string, FileEntry>();
  const fail = (e: FileEntry, why: string): never => {
    throw new InvalidManifestError(`Invalid manifest: ${section} entry "${e.path.slice(0, 200)}": ${why}`);
  };
  let total = 0;
  for (const e of list) {
    const problem = pathProblem(e.path);
    if (problem !== undefined) fail(e, `unsafe path: ${problem}`);
    if (byPath.has(e.path)) fail(e, "the path appears twice");
    byPath.set(e.path, e);
    if (e.path === "." && e.type !== "dir") fail(e, "the root must be a directory");
    if (e.opaque !== undefined && e.type !== "dir") fail(e, "only a directory can be opaque");
    if (e.type === "file") {
      const cs = e.chunkSize;
      if (cs < LIMITS.minChunkSize || (cs & (cs - 1)) !== 0) fail(e, `chunk size ${cs} is not a power of two from ${LIMITS.minChunkSize}`);
      const n = Math.ceil(e.size / cs);
      if (e.chunks.byteLength !== n * HASH_BYTES) {
        fail(e, `size ${e.size} needs ${n} chunks of ${cs} bytes but ${e.chunks.byteLength / HASH_BYTES} are listed`);
      }
      if (e.target !== undefined) fail(e, "a file has no target");
      total += e.size;
    } else {
      if (e.size !== 0 || e.chunks.byteLength !== 0 || e.chunkSize !== 0) fail(e, `a ${e.type} has no size or chunks`);
      if (e.type === "dir" && e.target !== undefined) fail(e, "a directory has no target");
      if ((e.type === "whiteout" || e.type === "fifo") && e.target !== undefined) fail(e, `a ${e.type} has no target`);
    }
    if (e.type === "symlink") {
      const t = e.target;
      if (t === undefined || t.length === 0) fail(e, "a symlink needs a target");
      if (t!.includes("\0")) fail(e, "the symlink target contains a NUL byte");
      // Absolute targets resolve inside the pod's root when the pod runs, and
      // materializing never follows links; a relative target must not climb out.
      if (!t!.startsWith("/")) {
        const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(e.path), t!));
        if (resolved === ".." || resolved.startsWith("../")) fail(e, `the symlink target "${t!.slice(0, 200)}" points outside the root`);
      }
    }
  }
  for (const e of list) {
    // No entry may sit under a symlink, file or hard link of the same tree:
    // writing it would follow (or clobber) that link.
    let p = e.path;
    for (;;) {
      const i = p.lastIndexOf("/");
      if (i < 0) break;
      p = p.slice(0, i);
      const parent = byPath.get(p);
      if (parent !== undefined && parent.type !== "dir") fail(e, `it lies under "${p}", which is a ${parent.type}`);
    }
    if (e.type === "hardlink") {
      const t = e.target;
      if (t === undefined || pathProblem(t) !== undefined) fail(e, "a hard link needs a safe target path");
      const target = byPath.get(t!);
      if (target === undefined || target.type !== "file") fail(e, `hard link target "${t!.slice(0, 200)}" is not a file of this tree`);
    }
  }
  return total;
}

/** Number of chunks a file entry lists. */
export function chunkCount(e: FileEntry): number {
  return e.chunks.byteLength / HASH_BYTES;
}

/** The i-th chunk hash of a file (a view, not a copy). */
export function chunkHash(e: FileEntry, i: number): Hash {
  return e.chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
}

/** The i-th chunk's length: chunkSize, except the last. */
export function chunkLength(e: FileEntry, i: number): number {
  return Math.min(e.chunkSize, e.size - i * e.chunkSize);
}

/** A tree of the manifest: its section name and its entries. */
export interface ManifestTree {
  /** "criu", "rootfs", "base" or "volume:/data". */
  name: string;
  entries: FileEntry[];
}

export function treesOf(m: Manifest): ManifestTree[] {
  return [
    { name: "criu", entries: m.criu },
    { name: "rootfs", entries: m.rootfs },
    ...(m.base ? [{ name: "base", entries: m.base }] : []),
    ...m.volumes.map((v) => ({ name: `volume:${v.path}`, entries: v.entries })),
  ];
}

/** Sum of all file sizes (zero chunks included). */
export function logicalBytes(m: Manifest): number {
  let n = 0;
  for (const t of treesOf(m)) for (const e of t.entries) n += e.size;
  return n;
}

/** A stored chunk the manifest refers to, with the first file that uses it. */
export interface ChunkRef {
  hash: Hash;
  length: number;
  tree: string;
  path: string;
}

/** Every distinct stored (non-zero) chunk, in first-use order. */
export function uniqueChunkRefs(m: Manifest): ChunkRef[] {
  // A hash table over the hashes' own bytes: a Set of hex strings cost more than hashing the pages.
  let total = 0;
  for (const t of treesOf(m)) for (const e of t.entries) total += e.chunks.byteLength / HASH_BYTES;
  const seen = new HashTable(total);
  const out: ChunkRef[] = [];
  for (const t of treesOf(m)) {
    for (const e of t.entries) {
      if (e.type !== "file") continue;
      const n = chunkCount(e);
      for (let i = 0; i < n; i++) {
        const at = i * HASH_BYTES;
        if (isZeroAt(e.chunks, at) || !seen.add(e.chunks, at).added) continue;
        out.push({ hash: e.chunks.subarray(at, at + HASH_BYTES), length: chunkLength(e, i), tree: t.name, path: e.path });
      }
    }
  }
  return out;
}

function isZeroAt(b: Uint8Array, at: number): boolean {
  for (let k = 0; k < HASH_BYTES; k++) if (b[at + k] !== 0) return false;
  return true;
}
