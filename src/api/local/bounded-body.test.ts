import { describe, expect, test } from "bun:test";
import { BodyTooLargeError, readBoundedText } from "./bounded-body.ts";

function streamOf(total: number, piece = 64 << 10): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= total) return c.close();
      const n = Math.min(piece, total - sent);
      sent += n;
      c.enqueue(new Uint8Array(n).fill(0x20));
    },
  });
  return { body, pulled: () => sent };
}

describe("readBoundedText", () => {
  test("reads a body within the limit", async () => {
    expect(await readBoundedText(new Request("http://x/", { method: "POST", body: '{"a":1}' }), 100)).toBe('{"a":1}');
    expect(await readBoundedText(new Request("http://x/", { method: "POST" }), 100)).toBe("");
  });

  test("refuses by Content-Length before reading a byte", async () => {
    const { body, pulled } = streamOf(1 << 30);
    const req = new Request("http://x/", { method: "POST", body, headers: { "content-length": String(1 << 30) }, duplex: "half" } as RequestInit);
    await expect(readBoundedText(req, 65536)).rejects.toThrow("The request body is too large: 1073741824 bytes; the limit is 65536");
    expect(pulled()).toBeLessThanOrEqual(2 * (64 << 10)); // at most what the stream buffered ahead on its own
  });

  test("refuses a streamed body as soon as it passes the limit, without reading the rest", async () => {
    const { body, pulled } = streamOf(1 << 30);
    const req = new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit);
    req.headers.delete("content-length");
    const e = await readBoundedText(req, 100_000).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BodyTooLargeError);
    expect((e as Error).message).toBe("The request body is too large: more than 100000 bytes");
    expect(pulled()).toBeLessThan(1 << 20);
  });

  test("a malformed Content-Length is an error, not a guess", async () => {
    const req = new Request("http://x/", { method: "POST", body: "x", headers: { "content-length": "-5" } });
    await expect(readBoundedText(req, 100)).rejects.toThrow('Invalid Content-Length "-5"');
  });
});
