import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { forgetArrival, readArrivals, recordArrival } from "./arrivals.ts";
import { RECORD_FILE, readRecord, recordAway, recordHome } from "./record.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "autopod-evac-record-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const image = "ab".repeat(32);

describe("the evacuation record", () => {
  test("pods are added, replaced by name, removed; no pods leaves no file and no temporary file", () => {
    expect(readRecord(dir)).toEqual([]);
    recordAway(dir, { pod: "web", outcome: "migrated", to: "b", at: "t1" });
    recordAway(dir, { pod: "db", outcome: "suspended", image, at: "t2" });
    recordAway(dir, { pod: "web", outcome: "migrated", to: "c", at: "t3" });
    expect(readRecord(dir)).toEqual([
      { pod: "db", outcome: "suspended", image, at: "t2" },
      { pod: "web", outcome: "migrated", to: "c", at: "t3" },
    ]);
    recordHome(dir, "web");
    recordHome(dir, "db");
    expect(readRecord(dir)).toEqual([]);
    expect(existsSync(join(dir, RECORD_FILE))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a damaged or tampered record is refused, naming the file", () => {
    const path = join(dir, RECORD_FILE);
    writeFileSync(path, "{not json");
    expect(() => readRecord(dir)).toThrow(`The evacuation record "${path}" is not JSON`);
    for (const pods of [
      [{ pod: "../etc", outcome: "migrated", to: "b", at: "t" }],
      [{ pod: "web", outcome: "suspended", image: "../../x", at: "t" }],
      [{ pod: "web", outcome: "killed", at: "t" }],
      [{ pod: "web", outcome: "migrated", to: "b", at: "t", extra: 1 }],
    ]) {
      writeFileSync(path, JSON.stringify({ version: 1, pods }));
      expect(() => readRecord(dir)).toThrow(`The evacuation record "${path}" is not valid`);
    }
  });
});

describe("arrivals", () => {
  test("recorded, read, forgotten; a damaged file reads as none", () => {
    recordArrival(dir, "web", "a");
    expect(readArrivals(dir)).toEqual({ web: { from: "a", at: expect.any(String) } });
    forgetArrival(dir, "web");
    expect(readArrivals(dir)).toEqual({});
    writeFileSync(join(dir, "arrivals.json"), "[1,2");
    expect(readArrivals(dir)).toEqual({});
    writeFileSync(join(dir, "arrivals.json"), JSON.stringify({ web: { from: 5 } }));
    expect(readArrivals(dir)).toEqual({});
  });
});
