import { describe, expect, test } from "bun:test";
import { formatDuration, ProgressLine } from "./progress.ts";

function fakeTerminal() {
  const writes: string[] = [];
  return { writes, term: { columns: 100, write: (s: string) => writes.push(s) } };
}

describe("ProgressLine", () => {
  test("redraws in place at most every 100 ms, and at once when the phase changes", () => {
    const { writes, term } = fakeTerminal();
    let t = 0;
    const line = new ProgressLine(term, { isEnabled: true, now: () => t });
    // 1000 updates over one second of the fake clock: about ten draws.
    for (let i = 0; i < 1000; i++) {
      t = i;
      line.update({ phase: "sending", bytes: i * 1000, totalBytes: 10_000_000 });
    }
    expect(writes.length).toBeGreaterThanOrEqual(9);
    expect(writes.length).toBeLessThanOrEqual(11);
    for (const w of writes) {
      expect(w.startsWith("\r")).toBe(true);
      expect(w.endsWith("\x1b[K")).toBe(true);
    }
    t = 1001;
    line.update({ phase: "committing", bytes: 0, totalBytes: null });
    expect(writes.at(-1)).toBe("\rcommitting\x1b[K");
    line.clear();
    expect(writes.at(-1)).toBe("\r\x1b[K");
  });

  test("shows bytes of the total, the rate over the last seconds, and the time left", () => {
    let t = 0;
    const line = new ProgressLine(fakeTerminal().term, { isEnabled: true, now: () => t });
    line.update({ phase: "sending", bytes: 0, totalBytes: 1000 << 20 });
    t = 1000;
    line.update({ phase: "sending", bytes: 100 << 20, totalBytes: 1000 << 20 });
    expect(line.render({ phase: "sending", bytes: 100 << 20, totalBytes: 1000 << 20 })).toBe("sending  100 MiB of 1000 MiB (10%)  100 MiB/s  ETA 9s");
  });

  test("draws nothing when disabled (not a terminal, or --json), and clear() then writes nothing", () => {
    const { writes, term } = fakeTerminal();
    const line = new ProgressLine(term, { isEnabled: false });
    line.update({ phase: "sending", bytes: 1, totalBytes: 2 });
    line.clear();
    expect(writes).toEqual([]);
  });

  test("fits the terminal's width", () => {
    const writes: string[] = [];
    const line = new ProgressLine({ columns: 30, write: (s) => writes.push(s) }, { isEnabled: true, now: () => 0 });
    line.update({ phase: "a very long phase name that goes on and on", bytes: 5, totalBytes: 10 });
    expect(writes[0]!.replace("\r", "").replace("\x1b[K", "").length).toBeLessThanOrEqual(29);
  });

  test("formatDuration", () => {
    expect(formatDuration(4.6)).toBe("5s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(3720)).toBe("1h02m");
  });
});
