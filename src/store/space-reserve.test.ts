import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isOutOfSpace, SpaceReserve } from "./space-reserve.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-reserve-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("out-of-space errors are recognised, others are not", () => {
  expect(isOutOfSpace(Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" }))).toBe(true);
  expect(isOutOfSpace(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }))).toBe(true);
  expect(isOutOfSpace(new Error("database is locked"))).toBe(false);
  expect(isOutOfSpace(null)).toBe(false);
});

test("an operation that fails for lack of space runs again with the reserve released, which is taken back after", () => {
  const r = new SpaceReserve(dir, 1 << 20);
  expect(r.take()).toBe(true);
  expect(statSync(r.path).size).toBe(1 << 20);
  let tries = 0;
  const out = r.withSpace(() => {
    tries++;
    if (existsSync(r.path)) throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    return "done";
  });
  expect(out).toBe("done");
  expect(tries).toBe(2);
  expect(r.isHeld).toBe(true);
});

test("other errors, or a second failure, are thrown as they are", () => {
  const r = new SpaceReserve(dir, 1 << 20);
  r.take();
  expect(() =>
    r.withSpace(() => {
      throw new Error("boom");
    }),
  ).toThrow("boom");
  let tries = 0;
  expect(() =>
    r.withSpace(() => {
      tries++;
      throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    }),
  ).toThrow("database or disk is full");
  expect(tries).toBe(2);
});
