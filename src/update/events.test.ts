import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventLog, formatEvent, type UpdateEvent } from "./events.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-events-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("EventLog", () => {
  test("events are numbered, kept on disk, and seen by subscribers and a new log on the same file", () => {
    const path = join(dir, "a.jsonl");
    const log = new EventLog(path);
    const seen: UpdateEvent[] = [];
    const off = log.subscribe((e) => seen.push(e));
    log.emit("info", "update.needed", "The host needs updates", { reasons: ["reboot-required"] }, "c1");
    off();
    log.emit("warn", "window.waiting", "Waiting");
    expect(seen.map((e) => e.seq)).toEqual([1]);
    const again = new EventLog(path);
    expect(again.list().map((e) => [e.seq, e.kind, e.cycle])).toEqual([
      [1, "update.needed", "c1"],
      [2, "window.waiting", undefined],
    ]);
    expect(again.emit("info", "x", "X").seq).toBe(3);
    expect(again.list(2).map((e) => e.seq)).toEqual([3]);
    expect(formatEvent(again.list(0)[0]!)).toMatch(/INFO {2}The host needs updates {2}reasons=\["reboot-required"\]$/);
  });

  test("the file stays under its cap and keeps the newest events", () => {
    const path = join(dir, "b.jsonl");
    const log = new EventLog(path, { maxBytes: 4096 });
    for (let i = 0; i < 500; i++) log.emit("info", "tick", `event ${i}`);
    expect(statSync(path).size).toBeLessThanOrEqual(4096);
    const kept = log.list();
    expect(kept.at(-1)!.seq).toBe(500);
    expect(kept.length).toBeGreaterThan(10);
    expect(kept.every((e, i) => i === 0 || e.seq === kept[i - 1]!.seq + 1)).toBe(true);
  });
});
