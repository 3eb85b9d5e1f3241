/**
 * Exec's wire format: frames of [type: u8][length: u32 BE][payload].
 * The response streams output as it comes; the exit status (or an error) is
 * its last frame. An interactive request body (EXEC_CONTENT_TYPE) is frames
 * too: `start` (JSON: cmd, stdin, tty) first, then `stdin` bytes, `resize`
 * (rows, cols: u16 BE each) and `stdinEnd`, in any order, as they happen.
 */
export const FRAME = { stdout: 1, stderr: 2, exit: 3, error: 4, keepalive: 5, start: 6, stdin: 7, resize: 8, stdinEnd: 9 } as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

export const EXEC_CONTENT_TYPE = "application/vnd.autopod.exec";

export function encodeFrame(type: FrameType, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

export function exitFrame(code: number): Uint8Array {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setInt32(0, code);
  return encodeFrame(FRAME.exit, p);
}

export interface Frame {
  type: FrameType;
  payload: Uint8Array;
}

export function resizeFrame(rows: number, cols: number): Uint8Array {
  const p = new Uint8Array(4);
  const v = new DataView(p.buffer);
  v.setUint16(0, rows);
  v.setUint16(2, cols);
  return encodeFrame(FRAME.resize, p);
}

/** A resize frame's size; null when its payload is not 4 bytes or a side is 0. */
export function sizeOf(f: Frame): { rows: number; cols: number } | null {
  if (f.payload.length !== 4) return null;
  const v = new DataView(f.payload.buffer, f.payload.byteOffset);
  const size = { rows: v.getUint16(0), cols: v.getUint16(2) };
  return size.rows > 0 && size.cols > 0 ? size : null;
}

/** A frame longer than the reader allows. */
export class FrameTooLargeError extends Error {
  override name = "FrameTooLargeError";
}

/** Split a byte stream into frames, whatever the chunking; a frame announcing more than `maxPayload` bytes is an error. */
export async function* decodeFrames(stream: AsyncIterable<Uint8Array>, maxPayload = 2 ** 32): AsyncGenerator<Frame> {
  // Pending chunks are joined only once a whole frame is there, so tiny chunks cost no copying.
  let pending: Uint8Array[] = [];
  let total = 0;
  let need = 5;
  const take = (): Uint8Array => {
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, total);
    pending = [all];
    return all;
  };
  for await (const chunk of stream) {
    pending.push(chunk);
    total += chunk.length;
    while (total >= need) {
      let buf = take();
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
      if (len > maxPayload) throw new FrameTooLargeError(`An exec frame of ${len} bytes is over the limit of ${maxPayload}`);
      need = 5 + len;
      if (total < need) break;
      yield { type: buf[0] as FrameType, payload: buf.slice(5, need) };
      buf = buf.subarray(need);
      pending = buf.length ? [buf] : [];
      total = buf.length;
      need = 5;
    }
  }
  if (total) throw new Error("The exec stream ended in the middle of a frame");
}

export function exitCodeOf(f: Frame): number {
  return new DataView(f.payload.buffer, f.payload.byteOffset).getInt32(0);
}
