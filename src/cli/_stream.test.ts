import { expect, test } from "bun:test";
import type { Progress } from "../progress.ts";
import { counted } from "./_stream.ts";

test("counted passes the bytes unchanged and tells the running count of the total", async () => {
  const seen: Progress[] = [];
  const source = new Blob([new Uint8Array(3), new Uint8Array(5)]).stream();
  const out = await new Response(counted(source, "importing", 8, (p) => seen.push(p))).arrayBuffer();
  expect(out.byteLength).toBe(8);
  expect(seen[0]).toEqual({ phase: "importing", bytes: 0, totalBytes: 8 });
  expect(seen.at(-1)).toEqual({ phase: "importing", bytes: 8, totalBytes: 8 });
});
