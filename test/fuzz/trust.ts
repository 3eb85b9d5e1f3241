/**
 * The one place the fuzzer says how much it trusts the images it feeds: they
 * are foreign (rebuilt around edited manifests), so once imports of foreign
 * images need `--trust` or a trusted signer, add it here and every layer
 * (in-process imports, `image import`, `restore --import`) uses it.
 */
import type { ByteSource, ImportResult } from "../../src/checkpoint/import.ts";
import { importImage } from "../../src/checkpoint/import.ts";
import type { ImageCatalogue } from "../../src/store/image-catalogue.ts";

/** Extra arguments of `autopod image import` for a fuzzed (foreign) file. */
export const IMPORT_FLAGS: readonly string[] = ["--trust"];

/** importImage as the fuzzer calls it in-process (add the trust option here once it exists). */
export function importForFuzz(catalogue: ImageCatalogue, source: ByteSource): Promise<ImportResult> {
  // As `--trust` admits them: every check an image from elsewhere gets, no signature needed.
  return importImage(catalogue, source, { admit: async () => () => {} });
}
