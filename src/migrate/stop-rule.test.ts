import { describe, expect, test } from "bun:test";
import { shouldFreeze, SMALL_ROUND_BYTES } from "./stop-rule.ts";

const MIB = 1 << 20;

describe("shouldFreeze", () => {
  test("never before the first round, unless no round is allowed", () => {
    expect(shouldFreeze([], 8)).toBe(false);
    expect(shouldFreeze([], 0)).toBe(true);
  });
  test("after a round small enough", () => {
    expect(shouldFreeze([SMALL_ROUND_BYTES], 8)).toBe(true);
    expect(shouldFreeze([1024 * MIB, 10 * MIB], 8)).toBe(false);
  });
  test("when rounds stop shrinking by half", () => {
    expect(shouldFreeze([1024 * MIB, 100 * MIB], 8)).toBe(false);
    expect(shouldFreeze([1024 * MIB, 100 * MIB, 20 * MIB], 8)).toBe(false);
    expect(shouldFreeze([1024 * MIB, 100 * MIB, 20 * MIB, 15 * MIB], 8)).toBe(true);
  });
  test("at the round limit", () => {
    expect(shouldFreeze([1024 * MIB], 1)).toBe(true);
    expect(shouldFreeze([1024 * MIB, 500 * MIB, 200 * MIB], 3)).toBe(true);
  });
});
