/**
 * The CRIU section of a manifest: only regular files with plain names, flat
 * in one directory, none of them a file CRIU writes or follows at restore.
 * A symlink there (restore.log -> /etc/shadow) once made CRIU, as root,
 * overwrite a host file with its log: checked before anything is written.
 */
import type { FileEntry } from "../../image/manifest.ts";
import { CriuImageError, ImageRefusedError } from "./errors.ts";

/** What CRIU names its image files: "core-1.img", "tmpfs-dev-43.tar.gz.img", "stats-dump". */
const CRIU_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Files CRIU writes or follows in its directories at restore: never taken from an image. */
export const CRIU_RESTORE_OUTPUTS: ReadonlySet<string> = new Set(["restore.log", "stats-restore", "restore.pid", "parent", "dump.log", "irmap-cache"]);

/** Throws CriuImageError naming the first CRIU file that is not a plain regular file with a safe name. */
export function checkCriuFileNames(entries: readonly FileEntry[]): void {
  for (const e of entries) {
    if (e.path === ".") {
      if (e.type !== "dir") throw new CriuImageError(`the CRIU directory itself is a ${e.type}, not a directory`);
      continue;
    }
    const name = JSON.stringify(e.path.slice(0, 200));
    if (e.type !== "file") {
      const to = e.target !== undefined ? ` to ${JSON.stringify(e.target.slice(0, 200))}` : "";
      throw new CriuImageError(`CRIU file ${name} is a ${e.type}${to}; an image's CRIU files must be regular files`);
    }
    if (!CRIU_FILE_NAME.test(e.path))
      throw new CriuImageError(`CRIU file ${name} has a name CRIU never writes (letters, digits, ".", "_" and "-" in one directory)`);
    if (CRIU_RESTORE_OUTPUTS.has(e.path)) throw new CriuImageError(`CRIU file ${name} is one CRIU writes or follows at restore; an image may not bring it`);
  }
}

/** checkCriuFileNames for image `imageId`: throws ImageRefusedError. */
export function checkCriuFiles(imageId: string, entries: readonly FileEntry[]): void {
  try {
    checkCriuFileNames(entries);
  } catch (e) {
    if (e instanceof CriuImageError) throw new ImageRefusedError(imageId, e.message, { cause: e });
    throw e;
  }
}
