/** Reading an export from a file or stdin, and writing one to a file (atomically) or stdout. */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { InvalidArgumentError } from "../errors.ts";
import type { OnProgress } from "../progress.ts";

/** A file's bytes, or stdin's, with its size when known (a file's; null for stdin). */
export interface Source {
  stream: ReadableStream<Uint8Array>;
  totalBytes: number | null;
}

/** A file's bytes, or stdin's for "-", with the file's size for a progress line. */
export async function openSized(path: string): Promise<Source> {
  if (path === "-") return { stream: Bun.stdin.stream(), totalBytes: null };
  const f = Bun.file(path);
  if (!(await f.exists())) throw new InvalidArgumentError(`No such file: "${path}"`);
  return { stream: f.stream(), totalBytes: f.size };
}

/** `stream` unchanged, telling `onProgress` the bytes passed so far under `phase`. */
export function counted(stream: ReadableStream<Uint8Array>, phase: string, totalBytes: number | null, onProgress: OnProgress): ReadableStream<Uint8Array> {
  let bytes = 0;
  onProgress({ phase, bytes, totalBytes });
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        bytes += chunk.byteLength;
        onProgress({ phase, bytes, totalBytes });
        ctrl.enqueue(chunk);
      },
    }),
  );
}

/** Write a stream to `path` through a temporary file renamed into place, or to stdout for "-". Returns the bytes written. */
export async function writeSink(path: string, stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  if (path === "-") {
    const w = Bun.stdout.writer();
    for await (const chunk of stream) {
      w.write(chunk);
      n += chunk.byteLength;
      await w.flush();
    }
    await w.end();
    return n;
  }
  const tmp = `${path}.partial-${process.pid}`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    for await (const chunk of stream) {
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off);
      n += chunk.byteLength;
    }
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    return n;
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
    rmSync(tmp, { force: true });
    throw e;
  }
}
