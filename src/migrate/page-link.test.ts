import { describe, expect, test } from "bun:test";
import { FRAME, FrameReader, frame, MAX_FRAME } from "./page-link.ts";

const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

/** Three frames (one empty, one large) in one stream. */
function stream(): { whole: Uint8Array; payloads: Uint8Array[] } {
  const payloads = [bytes(1000, 1), new Uint8Array(0), bytes(70_000, 2)];
  const frames = [frame(FRAME.data, payloads[0]), frame(FRAME.ping, payloads[1]), frame(FRAME.data, payloads[2])];
  const whole = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
  let at = 0;
  for (const f of frames) {
    whole.set(f, at);
    at += f.byteLength;
  }
  return { whole, payloads };
}

describe("FrameReader", () => {
  test("frames come out whole and in order however the stream is cut", () => {
    const { whole, payloads } = stream();
    for (const size of [1, 2, 3, 4, 5, 6, 7, 999, 1005, 1006, 4096, 16_384, whole.byteLength]) {
      const r = new FrameReader();
      const got: Array<{ type: number; payload: Uint8Array }> = [];
      for (let at = 0; at < whole.byteLength; at += size) got.push(...r.push(whole.subarray(at, at + size)));
      expect(got.map((f) => f.type)).toEqual([FRAME.data, FRAME.ping, FRAME.data]);
      got.forEach((f, i) => {
        expect(Buffer.from(f.payload).equals(Buffer.from(payloads[i]!))).toBe(true);
      });
      expect(r.takeRest().byteLength).toBe(0);
    }
  });

  test("a payload is not changed when the socket reuses its buffer after the push", () => {
    const r = new FrameReader();
    const buf = frame(FRAME.data, bytes(64, 7));
    const [f] = r.push(buf);
    buf.fill(0);
    expect(Buffer.from(f!.payload).equals(Buffer.from(bytes(64, 7)))).toBe(true);
  });

  test("takeRest gives the bytes of a frame not yet complete, its header included", () => {
    const r = new FrameReader();
    const f = frame(FRAME.data, bytes(100, 3));
    expect(r.push(f.subarray(0, 3))).toEqual([]);
    expect(r.push(f.subarray(3, 50))).toEqual([]);
    expect(Buffer.from(r.takeRest()).equals(Buffer.from(f.subarray(0, 50)))).toBe(true);
    expect(r.takeRest().byteLength).toBe(0);
  });

  test("an unknown type or an oversized frame is refused as soon as its header is in", () => {
    expect(() => new FrameReader().push(new Uint8Array([9, 0, 0, 0, 1]))).toThrow('Unknown page link frame type "9"');
    const big = new Uint8Array(5);
    big[0] = FRAME.data;
    new DataView(big.buffer).setUint32(1, MAX_FRAME + 1);
    const r = new FrameReader();
    expect(r.push(big.subarray(0, 2))).toEqual([]);
    expect(() => r.push(big.subarray(2))).toThrow("over the limit");
  });
});
