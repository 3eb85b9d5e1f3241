import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeMigrationJournal } from "./journal.ts";
import { outcomeOf } from "./source.ts";

const ID = "0b0e8b8e-5f1e-4c4e-9a57-2b7f2d1c3a4b";
let dir = "";
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function journal(phase: "precopy" | "frozen" | "committed") {
  dir = mkdtempSync(join(tmpdir(), "autopod-outcome-"));
  writeMigrationJournal(dir, { role: "source", id: ID, pod: "web", peer: "b", phase, image: null, pid: null });
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
