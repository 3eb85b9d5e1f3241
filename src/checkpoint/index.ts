export {
  FORMAT_VERSION,
  InvalidManifestError,
  LIMITS,
  PAGE_SIZE,
  UnsupportedFormatError,
  checkEntries,
  chunkCount,
  chunkHash,
  chunkLength,
  decodeManifest,
  encodeManifest,
  imageIdOf,
  logicalBytes,
  pathProblem,
  treesOf,
  uniqueChunkRefs,
  validateManifest,
} from "./manifest.ts";
export type { ChunkRef, EntryType, FileEntry, Manifest, ManifestTree, PodSpec, VolumeSection } from "./manifest.ts";
export { FILE_CHUNK_SIZE, captureTree, defaultChunkSize, materializeTree } from "./tree.ts";
export type { CaptureOptions, CaptureResult, ChunkSource, MaterializeOptions, MaterializeResult } from "./tree.ts";
export { EXPORT_MAGIC, EXPORT_VERSION, InvalidExportError, exportFrames, exportImage, exportStream, importImage } from "./export.ts";
export type { ByteSink, ByteSource, ExportResult, ImportResult } from "./export.ts";
