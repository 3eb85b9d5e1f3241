import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { checkSharedVolume } from "./placement.ts";

test("an image from another host may name only a real, non-system directory as shared storage", () => {
  const dir = mkdtempSync(`${tmpdir()}/shared-`);
  expect(() => checkSharedVolume(dir, "/var/lib/autopod")).not.toThrow();
  for (const bad of ["/", "/etc", "/etc/", "/usr", "/var/lib", "/var/lib/autopod", "/var/lib/autopod/store", "/var"]) {
    expect(() => checkSharedVolume(bad, "/var/lib/autopod")).toThrow("will not give a pod that host directory");
  }
  expect(() => checkSharedVolume("/srv/../etc", "/var/lib/autopod")).toThrow("not an absolute path");
  expect(() => checkSharedVolume(`${dir}/missing`, "/var/lib/autopod")).toThrow("is not a directory on this host");
});
