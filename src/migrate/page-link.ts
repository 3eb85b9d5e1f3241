/**
 * The post-copy page link: CRIU's page-server protocol between the source's
 * `criu dump --lazy-pages` and the destination's `criu lazy-pages`, carried
 * between the two agents, never over CRIU's own unauthenticated TCP port.
 * Each CRIU gets one end of a local unix socket (--ps-socket); the agent holds
 * the other and bridges it to the peer over mutual TLS (the cluster's CA),
 * where the destination must also prove it holds the migration's secret before
 * a byte of memory goes out (page-link-tls.ts makes those connections).
 *
 * On the link, frames: type (1 byte), length (4 bytes, big-endian), payload.
 * DATA carries CRIU's bytes; PING keeps a silent link from looking cut; DONE
 * (destination -> source) says every page arrived; COMMITTED (source ->
 * destination) says the source killed its copy. A link that hears nothing for
 * its silence limit is given up: the pod then runs on the source only.
 */
import { errorMessage, UnavailableError } from "../errors.ts";

export const FRAME = { data: 1, ping: 2, done: 3, committed: 4, hello: 5 } as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];
/** The largest payload of a frame: CRIU's reads are at most a pipe's worth. */
export const MAX_FRAME = 4 << 20;
export const PING_EVERY_MS = 500;

/** A frame's bytes. */
export function frame(type: FrameType, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

/**
 * Cuts a byte stream into frames; throws on an unknown type or an oversized frame (a peer that does not speak this).
 * Each chunk is copied once as it comes (the socket's buffer is not ours to keep) and a payload is a view of that
 * copy when it lies in one chunk; one spread over several is joined once. (Joining the whole buffer again at every
 * chunk, as it did first, copied a 1 MiB frame that came in 16 KiB TLS records 32 times: under 100 MB/s.)
 */
export class FrameReader {
  #chunks: Uint8Array[] = [];
  #buffered = 0;

  push(chunk: Uint8Array): Array<{ type: FrameType; payload: Uint8Array }> {
    if (chunk.byteLength > 0) {
      this.#chunks.push(chunk.slice());
      this.#buffered += chunk.byteLength;
    }
    const out: Array<{ type: FrameType; payload: Uint8Array }> = [];
    while (this.#buffered >= 5) {
      const head = this.#peek(5);
      const type = head[0]!;
      const len = new DataView(head.buffer, head.byteOffset, 5).getUint32(1);
      if (type < 1 || type > 5) throw new Error(`Unknown page link frame type "${type}"`);
      if (len > MAX_FRAME) throw new Error(`Page link frame of ${len} bytes is over the limit of ${MAX_FRAME}`);
      if (this.#buffered - 5 < len) break;
      this.#take(5);
      out.push({ type: type as FrameType, payload: this.#take(len) });
    }
    return out;
  }

  /** The bytes of frames not yet complete, taken. */
  takeRest(): Uint8Array {
    return this.#take(this.#buffered);
  }

  /** The first n buffered bytes (n <= buffered), not taken. */
  #peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    return first.byteLength >= n ? first.subarray(0, n) : this.#join(n, false);
  }

  /** The first n buffered bytes (n <= buffered), taken: a view when they lie in one chunk. */
  #take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0]!;
    if (first.byteLength < n) return this.#join(n, true);
    this.#buffered -= n;
    if (first.byteLength === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    return first.subarray(0, n);
  }

  #join(n: number, isTaken: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    let i = 0;
    while (at < n) {
      const c = this.#chunks[i]!;
      const k = Math.min(c.byteLength, n - at);
      out.set(c.subarray(0, k), at);
      at += k;
      if (!isTaken) i++;
      else if (k === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    if (isTaken) this.#buffered -= n;
    return out;
  }
}

/** The little of a Bun socket the link needs. */
export interface ByteSocket {
  write(data: Uint8Array): number;
  end(): void;
}

/** Writes in order through a socket that may take only part of a write: the rest waits for drain(). */
export class Outbox {
  #queue: Uint8Array[] = [];
  #isClosed = false;
  constructor(readonly socket: ByteSocket) {}

  send(b: Uint8Array): void {
    if (this.#isClosed) return;
    if (this.#queue.length) {
      this.#queue.push(b);
      return;
    }
    const n = this.socket.write(b);
    if (n < b.byteLength) this.#queue.push(b.subarray(Math.max(0, n)));
  }

  drain(): void {
    while (this.#queue.length && !this.#isClosed) {
      const b = this.#queue[0]!;
      const n = this.socket.write(b);
      if (n < b.byteLength) {
        this.#queue[0] = b.subarray(Math.max(0, n));
        return;
      }
      this.#queue.shift();
    }
  }

  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#queue = [];
    try {
      this.socket.end();
    } catch {
      // gone already
    }
  }
}

export interface BridgeEvents {
  /** The destination says every page arrived (source side). */
  onDone?(info: { bytes: number }): void;
  /** The source says it committed (destination side). */
  onCommitted?(): void;
  /** The link or CRIU's socket ended before the bridge was closed on purpose. */
  onFailed(why: Error): void;
}

/**
 * One side of the link: the peer's TLS socket on one hand, CRIU's unix socket on the other.
 * Bytes from CRIU before the link is up wait in the link's outbox.
 */
export class PageBridge {
  readonly #reader = new FrameReader();
  #link: Outbox | null = null;
  #criu: Outbox | null = null;
  #toCriu: Uint8Array[] = [];
  #toLink: Uint8Array[] = [];
  #lastHeard = performance.now();
  #timer: ReturnType<typeof setInterval> | null = null;
  #isClosed = false;
  /** CRIU's bytes that crossed the link, each way. */
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly silentMs: number,
    readonly events: BridgeEvents,
  ) {}

  /** The peer's authenticated socket: frames flow from now on, and silence counts. */
  attachLink(s: ByteSocket): void {
    if (this.#isClosed) {
      s.end();
      return;
    }
    this.#link = new Outbox(s);
    this.#lastHeard = performance.now();
    for (const b of this.#toLink.splice(0)) this.#link.send(b);
    this.#timer = setInterval(() => {
      if (performance.now() - this.#lastHeard > this.silentMs) {
        this.fail(new UnavailableError(`The page link heard nothing from the peer for ${Math.round(this.silentMs / 1000)} s`));
        return;
      }
      this.#link?.send(frame(FRAME.ping));
    }, PING_EVERY_MS);
  }

  attachCriu(s: ByteSocket): void {
    if (this.#isClosed) {
      s.end();
      return;
    }
    this.#criu = new Outbox(s);
    for (const b of this.#toCriu.splice(0)) this.#criu.send(b);
  }

  /** Bytes CRIU wrote. */
  fromCriu(d: Uint8Array): void {
    for (let at = 0; at < d.byteLength; at += MAX_FRAME) {
      const part = d.subarray(at, Math.min(d.byteLength, at + MAX_FRAME));
      this.bytesOut += part.byteLength;
      this.#sendLink(frame(FRAME.data, part));
    }
  }

  /** Bytes the peer sent. */
  fromLink(d: Uint8Array): void {
    this.#lastHeard = performance.now();
    let frames: Array<{ type: FrameType; payload: Uint8Array }>;
    try {
      frames = this.#reader.push(d);
    } catch (e) {
      this.fail(new UnavailableError(`The page link broke: ${errorMessage(e)}`));
      return;
    }
    for (const f of frames) {
      if (f.type === FRAME.data) {
        this.bytesIn += f.payload.byteLength;
        if (this.#criu) this.#criu.send(f.payload);
        else this.#toCriu.push(f.payload);
      } else if (f.type === FRAME.done) {
        let bytes = 0;
        try {
          bytes = Number((JSON.parse(new TextDecoder().decode(f.payload)) as { bytes?: unknown }).bytes) || 0;
        } catch {
          // a count is only for the report
        }
        this.events.onDone?.({ bytes });
      } else if (f.type === FRAME.committed) {
        this.events.onCommitted?.();
      }
    }
  }

  sendDone(bytes: number): void {
    this.#sendLink(frame(FRAME.done, new TextEncoder().encode(JSON.stringify({ bytes }))));
  }

  sendCommitted(): void {
    this.#sendLink(frame(FRAME.committed));
  }

  drainLink(): void {
    this.#link?.drain();
  }

  drainCriu(): void {
    this.#criu?.drain();
  }

  /** CRIU's end closed: it finished or died; the caller learns which from CRIU's exit. */
  criuClosed(): void {
    this.#criu = null;
  }

  /** The peer's socket closed. */
  linkClosed(): void {
    if (!this.#isClosed) this.fail(new UnavailableError("The page link to the peer closed"));
  }

  fail(why: Error): void {
    if (this.#isClosed) return;
    this.close();
    this.events.onFailed(why);
  }

  /** Ends both sides; no event after this. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#link?.close();
    this.#criu?.close();
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  #sendLink(b: Uint8Array): void {
    if (this.#link) this.#link.send(b);
    else this.#toLink.push(b);
  }
}

/** A unix socket CRIU connects to (through the fd the agent gives it), bridged to `bridge`; close it once CRIU has its end. */
export function listenForCriu(path: string, bridge: PageBridge): { stop(): void } {
  const server = Bun.listen({
    unix: path,
    socket: {
      open(s) {
        bridge.attachCriu(s);
      },
      data(_s, d) {
        bridge.fromCriu(d);
      },
      drain() {
        bridge.drainCriu();
      },
      close() {
        bridge.criuClosed();
      },
      error() {
        bridge.criuClosed();
      },
    },
  });
  // Stops accepting: the connection CRIU made stays until the bridge closes it.
  return { stop: () => server.stop() };
}
