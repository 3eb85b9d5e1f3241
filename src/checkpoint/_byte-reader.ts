/**
 * Exact reads over an import's byte stream (import.ts): what the reader asks
 * for comes back whole, or an InvalidExportError says where the export was
 * cut short. A read already buffered is returned without awaiting.
 */
import { InvalidExportError } from "./export-format.ts";

/** Something import can read: a web ReadableStream, a Node readable (a file, stdin), or any async iterable of bytes. */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** Exact reads over a byte stream, naming what was cut short. */
export class ByteReader {
  offset = 0;
  readonly #it: AsyncIterator<Uint8Array>;
  #pieces: Uint8Array[] = [];
  #buffered = 0;
  #isDone = false;

  constructor(source: ByteSource) {
    const iterable: AsyncIterable<Uint8Array> =
      Symbol.asyncIterator in source ? (source as AsyncIterable<Uint8Array>) : streamIterable(source as ReadableStream<Uint8Array>);
    this.#it = iterable[Symbol.asyncIterator]();
  }

  /** `n` bytes, or a promise of them when they are not buffered yet (so the hot path never awaits). */
  /** `what` names the part for a truncation error (a function: made only then, not for every chunk). */
  exact(n: number, what: string | (() => string)): Uint8Array | Promise<Uint8Array> {
    return this.#buffered >= n ? this.#take(n) : this.#fill(n, what);
  }

  /** `n` bytes into `out` at `at`, copied as they arrive: a large read never holds its bytes twice. */
  async readInto(out: Uint8Array, at: number, n: number, what: string): Promise<void> {
    let got = 0;
    while (got < n) {
      if (this.#buffered === 0 && !(await this.#pull())) {
        throw new InvalidExportError(`Cannot import: the export is truncated (it ends at byte ${this.offset}, inside ${what})`);
      }
      const take = Math.min(this.#buffered, n - got, this.#pieces[0]!.byteLength);
      out.set(this.#take(take), at + got);
      got += take;
    }
  }

  async #fill(n: number, what: string | (() => string)): Promise<Uint8Array> {
    while (this.#buffered < n) {
      if (!(await this.#pull())) {
        throw new InvalidExportError(
          `Cannot import: the export is truncated (it ends at byte ${this.offset + this.#buffered}, inside ${typeof what === "string" ? what : what()})`,
        );
      }
    }
    return this.#take(n);
  }

  #take(n: number): Uint8Array {
    this.offset += n;
    const first = this.#pieces[0]!;
    if (first.byteLength >= n) {
      const out = first.subarray(0, n);
      if (first.byteLength === n) this.#pieces.shift();
      else this.#pieces[0] = first.subarray(n);
      this.#buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const p = this.#pieces[0]!;
      const take = Math.min(p.byteLength, n - got);
      out.set(p.subarray(0, take), got);
      got += take;
      if (take === p.byteLength) this.#pieces.shift();
      else this.#pieces[0] = p.subarray(take);
    }
    this.#buffered -= n;
    return out;
  }

  async isAtEnd(): Promise<boolean> {
    while (this.#buffered === 0) if (!(await this.#pull())) return true;
    return false;
  }

  async #pull(): Promise<boolean> {
    if (this.#isDone) return false;
    const { value, done } = await this.#it.next();
    if (done) {
      this.#isDone = true;
      return false;
    }
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (bytes.byteLength > 0) {
      this.#pieces.push(bytes);
      this.#buffered += bytes.byteLength;
    }
    return true;
  }
}

async function* streamIterable(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const r = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      yield value;
    }
  } finally {
    r.releaseLock();
  }
}
