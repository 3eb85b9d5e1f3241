export { ChunkStore, ChunkWriter, MAX_CHUNK_BYTES } from "./chunk-store.ts";
export type { ChunkStoreOptions, ClaimedChunk, GcOptions, GcResult, StoreStats } from "./chunk-store.ts";
export { ChunkMismatchError, CorruptChunkError, MissingChunkError } from "./errors.ts";
export { HASH_BYTES, ZERO_HASH, ZERO_HEX, fromHex, hashBytes, hashHex, isAllZero, isHexHash, isZeroHash, sha256, toHex } from "./hash.ts";
export type { Hash, HashLike } from "./hash.ts";
export { CorruptManifestError, ImageCatalogue } from "./image-catalogue.ts";
export type { ImageInfo } from "./image-catalogue.ts";
