import { describe, expect, test } from "bun:test";
import { NotFoundError, UnavailableError } from "../../errors.ts";
import type { Progress } from "../../progress.ts";
import { progressResponse, readProgressStream } from "./progress-stream.ts";

/** Re-chunk a body into pieces of `size` bytes, so lines are split anywhere. */
function rechunk(body: ReadableStream<Uint8Array>, size: number): ReadableStream<Uint8Array> {
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        for (let i = 0; i < chunk.byteLength; i += size) c.enqueue(chunk.subarray(i, i + size));
      },
    }),
  );
}

describe("progress streams", () => {
  test("carry throttled progress, every phase change, then the result, whatever the chunking", async () => {
    const res = progressResponse(
      async (on) => {
        for (let i = 0; i <= 1000; i++) on({ phase: "sending", bytes: i, totalBytes: 1000 });
        await Bun.sleep(150);
        on({ phase: "sending", bytes: 1000, totalBytes: 1000 });
        on({ phase: "committing", bytes: 0, totalBytes: null });
        return { done: 42 };
      },
      { intervalMs: 100 },
    );
    expect(res.headers.get("content-type")).toBe("application/x-ndjson");
    const seen: Progress[] = [];
    const result = await readProgressStream<{ done: number }>(rechunk(res.body!, 7), (p) => seen.push(p));
    expect(result).toEqual({ done: 42 });
    // The first update (a new phase), the one after the pause, and the phase change: not all 1003.
    expect(seen.length).toBeLessThanOrEqual(4);
    expect(seen[0]).toEqual({ phase: "sending", bytes: 0, totalBytes: 1000 });
    expect(seen.at(-1)).toEqual({ phase: "committing", bytes: 0, totalBytes: null });
  });

  test("an error becomes the agent's own error class and message", async () => {
    const res = progressResponse(async (on) => {
      on({ phase: "sending", bytes: 1, totalBytes: 2 });
      throw new NotFoundError('No image "abc"');
    });
    const e = await readProgressStream(res.body!, () => {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect((e as Error).message).toBe('No image "abc"');
  });

  test("a stream that ends before its result is an UnavailableError", async () => {
    const body = new Blob(['{"progress":{"phase":"sending","bytes":1,"totalBytes":2}}\n']).stream();
    const e = await readProgressStream(body, () => {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toContain("ended before its result");
  });

  test("a line that is not JSON is refused, quoting it", async () => {
    const e = await readProgressStream(new Blob(["nonsense\n"]).stream(), () => {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toContain('"nonsense"');
  });
});
