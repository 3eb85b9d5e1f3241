import { expect, test } from "bun:test";
import { escapeCell, escapeForTerminal } from "./escape.ts";

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

test("terminal control sequences are printed as escapes, plain text as it is", () => {
  expect(escapeForTerminal("web-1 ok")).toBe("web-1 ok");
  expect(escapeForTerminal("\u001b]0;pwned\u0007\u001b[2J")).toBe("\\u001b]0;pwned\\u0007\\u001b[2J");
  expect(escapeForTerminal("a\u009b31mb\u007f")).toBe("a\\u009b31mb\\u007f");
  expect(escapeForTerminal("evil\u202Etxt.exe")).toBe("evil\\u202etxt.exe");
  expect(escapeForTerminal("line 1\nline 2\tx\r")).toBe("line 1\nline 2\tx\\u000d");
  expect(escapeForTerminal("héllo ✓")).toBe("héllo ✓");
});

test("a table cell keeps no newline or tab", () => {
  expect(escapeCell("a\nb\tc")).toBe("a\\u000ab\\u0009c");
});

test("escaped JSON stays JSON with the same value", () => {
  const value = { name: "x\u009b\u001b[31my\u202e" };
  expect(JSON.parse(escapeForTerminal(JSON.stringify(value)))).toEqual(value);
});

test("images and ps print a hostile pod name escaped, and their columns stay aligned", async () => {
  const { formatImageTable } = await import("./images.ts");
  const evil = "x\u001b]0;owned\u0007\u001b[2J\u009b1m\nfake row";
  const table = formatImageTable([
    { id: "a".repeat(64), pod: evil, createdAt: "2026-01-01T00:00:00Z", logicalBytes: 1, uniqueBytes: 1, parent: null, origin: "local" } as never,
  ]);
  expect(table).not.toMatch(CONTROL);
  expect(table.split("\n")).toHaveLength(2);
  expect(table).toContain("x\\u001b]0;owned\\u0007\\u001b[2J\\u009b1m\\u000afake row");
  const { formatPodTable } = await import("./ps.ts");
  const ps = formatPodTable([{ name: "ok", state: "running", pid: 1, address: "a", uptimeSeconds: 1, memoryBytes: null, rootfs: evil, reason: evil } as never]);
  expect(ps).not.toMatch(CONTROL);
  expect(ps.split("\n")).toHaveLength(2);
});
