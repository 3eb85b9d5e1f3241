import { describe, expect, test } from "bun:test";
import { FREEZE_OVERHEAD_MS, predictFreezeMs, shouldFreeze, SMALL_ROUND_BYTES } from "./stop-rule.ts";

const MIB = 1 << 20;

describe("shouldFreeze", () => {
  /** Rounds that sent these many bytes, each pausing the pod 900 ms, at 50 MiB/s. */
  const sent = (...bytes: number[]) => bytes.map((b) => ({ pauseMs: 900, ms: 2000 + b / ((50 * MIB) / 1000), pushMs: b / ((50 * MIB) / 1000), bytesSent: b }));
  test("never before the first round, unless no round is allowed", () => {
    expect(shouldFreeze([], 8)).toBe(false);
    expect(shouldFreeze([], 0)).toBe(true);
  });
  test("after a round small enough", () => {
    expect(shouldFreeze(sent(SMALL_ROUND_BYTES), 8)).toBe(true);
    expect(shouldFreeze(sent(1024 * MIB, 10 * MIB), 8)).toBe(false);
  });
  test("when rounds stop shrinking by half", () => {
    expect(shouldFreeze(sent(1024 * MIB, 100 * MIB), 8)).toBe(false);
    expect(shouldFreeze(sent(1024 * MIB, 100 * MIB, 20 * MIB), 8)).toBe(false);
    expect(shouldFreeze(sent(1024 * MIB, 100 * MIB, 20 * MIB, 15 * MIB), 8)).toBe(true);
  });
  test("when sending the last round again takes at most a tenth of the shortest pause", () => {
    // 50 MiB/s: 4 MiB is 80 ms, under a tenth of 900 ms; 5 MiB is 100 ms, over it.
    expect(shouldFreeze(sent(40 * MIB, 4 * MIB), 8)).toBe(true);
    expect(shouldFreeze(sent(40 * MIB, 5 * MIB), 8)).toBe(false);
    // One round paused long (a busy host): the shortest pause counts, not the last.
    const slow = sent(40 * MIB, 5 * MIB);
    slow[1]!.pauseMs = 4000;
    expect(shouldFreeze(slow, 8)).toBe(false);
    // A small pod's first round: sent at once.
    expect(shouldFreeze(sent(2 * MIB), 8)).toBe(true);
  });
  test("at the round limit", () => {
    expect(shouldFreeze(sent(1024 * MIB), 1)).toBe(true);
    expect(shouldFreeze(sent(1024 * MIB, 500 * MIB, 200 * MIB), 3)).toBe(true);
  });
});

describe("predictFreezeMs", () => {
  test("none before a round", () => {
    expect(predictFreezeMs([])).toBeNull();
  });
  test("the last round's dump and capture, its bytes at the best rate seen, a restore as long as its dump, and the overhead", () => {
    const rounds = [
      { pauseMs: 900, ms: 5000, pushMs: 3000, bytesSent: 300 * MIB },
      { pauseMs: 800, ms: 2200, pushMs: 200, bytesSent: 10 * MIB },
    ];
    // 100 MiB/s at best: 10 MiB in 100 ms; 2000 ms dump and capture; 800 ms restore.
    expect(predictFreezeMs(rounds)).toBe(2000 + 100 + 800 + FREEZE_OVERHEAD_MS);
  });
});
