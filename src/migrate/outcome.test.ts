import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeMigrationJournal } from "./journal.ts";
import { claimOf, outcomeOf } from "./source.ts";

const ID = "0b0e8b8e-5f1e-4c4e-9a57-2b7f2d1c3a4b";
let dir = "";
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  dir = "";
});

function journal(phase: "precopy" | "frozen" | "committed") {
  dir ||= mkdtempSync(join(tmpdir(), "autopod-outcome-"));
  writeMigrationJournal(dir, { role: "source", id: ID, pod: "web", peer: "b", phase, image: null, pid: null, secret: "ab".repeat(32) });
}

describe("outcomeOf (what the source answers a destination that asks)", () => {
  test("an id the source has no journal of was aborted", () => {
    dir = mkdtempSync(join(tmpdir(), "autopod-outcome-"));
    expect(outcomeOf(dir, new Set(), ID)).toBe("aborted");
    expect(outcomeOf(dir, new Set(), "../../etc/passwd")).toBe("aborted");
  });
  test("committed once the journal says so, whether or not this agent drives it", () => {
    journal("committed");
    expect(outcomeOf(dir, new Set(), ID)).toBe("committed");
    expect(outcomeOf(dir, new Set([ID]), ID)).toBe("committed");
  });
  test("pending while this agent drives it before the commit; aborted when no agent does (it died)", () => {
    journal("frozen");
    expect(outcomeOf(dir, new Set([ID]), ID)).toBe("pending");
    expect(outcomeOf(dir, new Set(), ID)).toBe("aborted");
  });
});

describe("claimOf (what the source answers a destination about to restore: is this migration yours?)", () => {
  test("names the pod and the destination while the migration stands", () => {
    journal("frozen");
    expect(claimOf(dir, new Set([ID]), ID)).toEqual({ outcome: "pending", pod: "web", to: "b" });
    journal("committed");
    expect(claimOf(dir, new Set(), ID)).toEqual({ outcome: "committed", pod: "web", to: "b" });
  });
  test("names nothing for a migration it does not drive", () => {
    journal("frozen");
    expect(claimOf(dir, new Set(), ID)).toEqual({ outcome: "aborted", pod: null, to: null });
    writeMigrationJournal(dir, { role: "destination", id: ID, pod: "web", peer: "a", phase: "ready", image: "0".repeat(64), pid: 1, secret: "ab".repeat(32) });
    expect(claimOf(dir, new Set([ID]), ID)).toEqual({ outcome: "aborted", pod: null, to: null });
  });
});
