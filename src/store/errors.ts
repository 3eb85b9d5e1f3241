import { AutopodError, InvalidArgumentError } from "../errors.ts";

/** A stored chunk whose bytes no longer match its hash (or whose record is damaged). */
export class CorruptChunkError extends AutopodError {
  override name = "CorruptChunkError";
  readonly hash: string;
  /** The file the chunk belongs to, when the caller knows it. */
  readonly path: string | undefined;
  constructor(hash: string, detail: string, options?: { cause?: unknown; path?: string }) {
    const where = options?.path === undefined ? "" : ` of file "${options.path}"`;
    super("internal", `Chunk ${hash}${where} is corrupt: ${detail}`, options);
    this.hash = hash;
    this.path = options?.path;
  }
  /** The same error, naming the file the chunk belongs to. */
  inFile(path: string): CorruptChunkError {
    const detail = this.message.replace(/^Chunk \S+( of file ".*")? is corrupt: /s, "");
    return new CorruptChunkError(this.hash, detail, { cause: this.cause, path });
  }
}

/** A chunk the store does not have. */
export class MissingChunkError extends AutopodError {
  override name = "MissingChunkError";
  readonly hash: string;
  readonly path: string | undefined;
  constructor(hash: string, options?: { cause?: unknown; path?: string }) {
    const where = options?.path === undefined ? "" : ` (needed by file "${options.path}")`;
    super("not_found", `Chunk ${hash} is not in the store${where}`, options);
    this.hash = hash;
    this.path = options?.path;
  }
}

/** Received bytes that do not hash to the hash they were sent with. */
export class ChunkMismatchError extends InvalidArgumentError {
  override name = "ChunkMismatchError";
  /** Every claimed hash whose bytes did not match. */
  readonly hashes: string[];
  constructor(hashes: string[]) {
    const shown = hashes
      .slice(0, 3)
      .map((h) => `"${h}"`)
      .join(", ");
    const more = hashes.length > 3 ? ` and ${hashes.length - 3} more` : "";
    super(
      hashes.length === 1
        ? `Chunk ${shown} does not match its bytes; the batch was rejected`
        : `Chunks ${shown}${more} do not match their bytes; the batch was rejected`,
    );
    this.hashes = hashes;
  }
}
