/** Reading an export from a file or stdin, and writing one to a file (atomically) or stdout. */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { InvalidArgumentError } from "../errors.ts";

/** A file's bytes, or stdin's for "-", as a stream. */
export async function openSource(path: string): Promise<ReadableStream<Uint8Array>> {
  if (path === "-") return Bun.stdin.stream();
  const f = Bun.file(path);
  if (!(await f.exists())) throw new InvalidArgumentError(`No such file: "${path}"`);
  return f.stream();
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
