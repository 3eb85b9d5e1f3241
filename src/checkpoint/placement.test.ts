import { expect, test } from "bun:test";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { checkSharedVolume } from "./placement.ts";

test("an image from another host may name only a real, non-system directory as shared storage", () => {
  const dir = mkdtempSync(`${tmpdir()}/shared-`);
  expect(() => checkSharedVolume(dir, "/var/lib/autopod")).not.toThrow();
  symlinkSync("/etc", `${dir}/link-to-etc`);
  // Other spellings of system directories (issue 16 row 3): each was mounted read-write before.
  for (const bad of [
    "/",
    "/.",
    "//",
    "/etc",
    "/etc/",
    "//etc",
    "/./etc",
    "/etc/cron.d",
    "/srv/../etc",
    `${dir}/link-to-etc`,
    `${dir}/link-to-etc/cron.d`,
    "/usr",
    "/lib",
    "/var/lib",
    "/var/spool/cron",
    "/var/lib/autopod",
    "/var/lib/autopod/store",
    "/var",
  ]) {
    expect(() => checkSharedVolume(bad, "/var/lib/autopod")).toThrow("will not give a pod that host directory");
  }
  expect(() => checkSharedVolume("etc", "/var/lib/autopod")).toThrow("not an absolute path");
  expect(() => checkSharedVolume(`${dir}/missing`, "/var/lib/autopod")).toThrow("is not a directory on this host");
});
