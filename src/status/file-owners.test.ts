import { expect, test } from "bun:test";
import { mergedUsrAlias, parseDpkgQueryS } from "./file-owners.ts";

test("parseDpkgQueryS on real `dpkg-query -S` output: owners, multi-arch, diversions skipped", () => {
  // Captured on this host: dpkg-query -S /usr/bin/python3.11 /nonexistent /bin/sh /usr/lib/python3.11/json/__init__.py
  // (the "no path found" complaints go to stderr).
  const out = [
    "python3.11-minimal: /usr/bin/python3.11",
    "diversion by dash from: /bin/sh",
    "diversion by dash to: /bin/sh.distrib",
    "dash: /bin/sh",
    "libpython3.11-stdlib:amd64: /usr/lib/python3.11/json/__init__.py",
    "libc6:amd64, libc6:i386: /usr/share/doc/libc6",
    "",
  ].join("\n");
  expect(Object.fromEntries(parseDpkgQueryS(out))).toEqual({
    "/usr/bin/python3.11": "python3.11-minimal",
    "/bin/sh": "dash",
    "/usr/lib/python3.11/json/__init__.py": "libpython3.11-stdlib",
    "/usr/share/doc/libc6": "libc6",
  });
});

test("mergedUsrAlias: dpkg lists /lib/x while the process maps /usr/lib/x", () => {
  expect(mergedUsrAlias("/usr/lib/x86_64-linux-gnu/libz.so.1")).toBe("/lib/x86_64-linux-gnu/libz.so.1");
  expect(mergedUsrAlias("/lib/x86_64-linux-gnu/libz.so.1")).toBe("/usr/lib/x86_64-linux-gnu/libz.so.1");
  expect(mergedUsrAlias("/usr/share/x")).toBeNull();
});
