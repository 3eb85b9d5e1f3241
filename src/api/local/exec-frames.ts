/**
 * The body of an exec response: frames of [type: u8][length: u32 BE][payload].
 * Output streams as it comes; the exit status (or an error) is the last frame.
 */
export const FRAME = { stdout: 1, stderr: 2, exit: 3, error: 4, keepalive: 5 } as const;
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

/** Split a byte stream into frames, whatever the chunking. */
export async function* decodeFrames(stream: AsyncIterable<Uint8Array>): AsyncGenerator<Frame> {
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
