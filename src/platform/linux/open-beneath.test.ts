import { afterAll, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, readSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBeneath, openRegularBeneath } from "./open-beneath.ts";
import { mkfifo } from "./libc.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-beneath-"));
const layer = join(dir, "layer");
mkdirSync(join(layer, ".autopod"), { recursive: true });
writeFileSync(join(layer, ".autopod/pod.log"), "hello\n");
writeFileSync(join(dir, "secret"), "host secret\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readAll(fd: number): string {
  const b = Buffer.alloc(100);
  const n = readSync(fd, b, 0, 100, 0);
  closeSync(fd);
  return b.subarray(0, n).toString();
}

test("a file beneath the directory opens; a missing one is null", () => {
  expect(readAll(openBeneath(layer, ".autopod/pod.log", 0)!)).toBe("hello\n");
  expect(openBeneath(layer, ".autopod/nothing", 0)).toBeNull();
});

test("a symlink as the file, as a directory on the way, or a path climbing out, is refused", () => {
  symlinkSync(join(dir, "secret"), join(layer, "abs"));
  symlinkSync("../secret", join(layer, "rel"));
  symlinkSync("pod.log", join(layer, ".autopod/inner"));
  mkdirSync(join(layer, "d"));
  symlinkSync(dir, join(layer, "d/up"));
  for (const p of ["abs", "rel", ".autopod/inner", "d/up/secret"]) expect(() => openBeneath(layer, p, 0)).toThrow("symbolic link");
  expect(() => openBeneath(layer, "../secret", 0)).toThrow("leaves its directory");
  expect(() => openBeneath(layer, "/etc/passwd", 0)).toThrow("leaves its directory");
});

test("a FIFO or a directory is not a regular file, and opening it does not block", () => {
  mkfifo(join(layer, "fifo"), 0o600);
  expect(() => openRegularBeneath(layer, "fifo")).toThrow("is not a regular file");
  expect(() => openRegularBeneath(layer, ".autopod")).toThrow("is not a regular file");
  const ok = openRegularBeneath(layer, ".autopod/pod.log")!;
  expect(ok.stat.size).toBe(6);
  closeSync(ok.fd);
});
