import { expect, test } from "bun:test";
import type { Progress } from "../progress.ts";
import { ProgressTicker } from "./_progress-ticker.ts";

test("a phase is told at once, then sampled from its counter until stopped", async () => {
  const seen: Progress[] = [];
  let bytes = 0;
  const ticker = new ProgressTicker((p) => seen.push(p), 10);
  ticker.phase("dumping", () => bytes);
  expect(seen).toEqual([{ phase: "dumping", bytes: 0, totalBytes: null }]);
  bytes = 4096;
  await Bun.sleep(40);
  expect(seen.at(-1)).toEqual({ phase: "dumping", bytes: 4096, totalBytes: null });
  ticker.phase("committing");
  expect(seen.at(-1)).toEqual({ phase: "committing", bytes: 0, totalBytes: null });
  ticker.stop();
  const n = seen.length;
  await Bun.sleep(40);
  expect(seen.length).toBe(n);
});

test("without a listener nothing runs", async () => {
  const ticker = new ProgressTicker(undefined, 1);
  ticker.phase("dumping", () => {
    throw new Error("never read");
  });
  await Bun.sleep(5);
  ticker.stop();
});
