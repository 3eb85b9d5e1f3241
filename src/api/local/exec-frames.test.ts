import { expect, test } from "bun:test";
import { decodeFrames, encodeFrame, exitCodeOf, exitFrame, FRAME, resizeFrame, sizeOf } from "./exec-frames.ts";

async function* chunks(bytes: Uint8Array, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

test("frames survive any chunking", async () => {
  const enc = new TextEncoder();
  const parts = [
    encodeFrame(FRAME.stdout, enc.encode("hello\n")),
    encodeFrame(FRAME.stderr, enc.encode("")),
    encodeFrame(FRAME.stdout, new Uint8Array(70_000).fill(7)),
    exitFrame(137),
  ];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  for (const size of [1, 3, 5, 4096, all.length]) {
    const frames = [];
    for await (const f of decodeFrames(chunks(all, size))) frames.push(f);
    expect(frames.map((f) => f.type)).toEqual([FRAME.stdout, FRAME.stderr, FRAME.stdout, FRAME.exit]);
    expect(new TextDecoder().decode(frames[0]!.payload)).toBe("hello\n");
    expect(frames[2]!.payload.length).toBe(70_000);
    expect(exitCodeOf(frames[3]!)).toBe(137);
  }
});

test("a truncated stream is an error", async () => {
  const f = encodeFrame(FRAME.stdout, new Uint8Array(10));
  const it = decodeFrames(chunks(f.slice(0, 8), 8));
  await expect(it.next()).rejects.toThrow(/middle of a frame/);
});

test("a frame over the reader's limit is refused before its payload is read", async () => {
  const header = encodeFrame(FRAME.stdin, new Uint8Array(0));
  new DataView(header.buffer).setUint32(1, 2 ** 31);
  await expect(decodeFrames(chunks(header, 5), 1 << 20).next()).rejects.toThrow(/over the limit of 1048576/);
});

test("resize frames carry rows and columns; a zero side is no size", async () => {
  const [f] = await Array.fromAsync(decodeFrames(chunks(resizeFrame(50, 132), 2)));
  expect(sizeOf(f!)).toEqual({ rows: 50, cols: 132 });
  const [z] = await Array.fromAsync(decodeFrames(chunks(resizeFrame(0, 80), 9)));
  expect(sizeOf(z!)).toBeNull();
});
