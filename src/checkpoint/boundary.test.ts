import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Imports from platform/linux that this folder may make: pure functions, or file-system calls trees need. */
const ALLOWED = new Map([
  ["host-compat.ts", "../platform/linux/criu.ts"], // version parsing and the kernel's minimum CRIU: pure
  ["tree.ts", "../platform/linux/libc.ts"], // xattrs, fifos and whiteouts of the files a tree holds
]);

test("checkpoint code speaks to the OS only through its CheckpointHost: no /proc, no signals, no platform/linux but pure helpers", () => {
  const dir = import.meta.dir;
  const sources = readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.startsWith("_fake") && f !== "_fixture.ts");
  expect(sources).toContain("checkpoint.ts");
  const problems: string[] = [];
  for (const f of sources) {
    const text = readFileSync(join(dir, f), "utf8");
    if (/process\.kill\(|Bun\.spawn|["'`]\/proc\//.test(text)) problems.push(`${f}: reads /proc, spawns or signals`);
    for (const m of text.matchAll(/from "(\.\.\/platform\/linux\/[^"]+)"/g)) {
      if (ALLOWED.get(f) !== m[1]) problems.push(`${f}: imports ${m[1]}`);
    }
  }
  expect(problems).toEqual([]);
});
