import { expect, test } from "bun:test";
import { childPath } from "./child-path.ts";

test("a name becomes one component under its directory", () => {
  expect(childPath("/var/lib/autopod", "volumes", "web", "vol0")).toBe("/var/lib/autopod/volumes/web/vol0");
  expect(childPath("/s/journal", "web.json")).toBe("/s/journal/web.json");
});

test("a name that would leave its directory is refused", () => {
  for (const bad of ["", ".", "..", "../x", "a/b", "/etc", "x\0y", "../../../../x/victim"]) {
    expect(() => childPath("/s", "volumes", bad)).toThrow("Invalid path component");
  }
});
