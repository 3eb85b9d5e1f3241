import { expect, test } from "bun:test";
import type { FileEntry } from "../../image/manifest.ts";
import { checkCriuFileNames, checkCriuFiles } from "./file-names.ts";

const entry = (path: string, type: FileEntry["type"] = "file", target?: string): FileEntry => ({
  path,
  type,
  mode: 0o600,
  uid: 0,
  gid: 0,
  mtimeMs: 0,
  size: 0,
  chunkSize: type === "file" ? 4096 : 0,
  chunks: new Uint8Array(),
  ...(target ? { target } : {}),
});

test("CRIU's own files pass", () => {
  expect(() =>
    checkCriuFileNames([entry(".", "dir"), entry("core-1.img"), entry("pages-1.img"), entry("stats-dump"), entry("tmpfs-dev-43.tar.gz.img")]),
  ).not.toThrow();
});

test("links, devices, FIFOs and directories are refused, naming the file", () => {
  expect(() => checkCriuFileNames([entry("restore.log", "symlink", "/etc/shadow")])).toThrow('CRIU file "restore.log" is a symlink to "/etc/shadow"');
  expect(() => checkCriuFileNames([entry("core-1.img", "hardlink", "pages-1.img")])).toThrow("is a hardlink");
  expect(() => checkCriuFileNames([entry("fifo", "fifo")])).toThrow("is a fifo");
  expect(() => checkCriuFileNames([entry("sub", "dir")])).toThrow("is a dir");
  expect(() => checkCriuFileNames([entry(".", "symlink", "/")])).toThrow("the CRIU directory itself is a symlink");
});

test("names CRIU never writes, and the files it writes at restore, are refused", () => {
  expect(() => checkCriuFileNames([entry("a/b.img")])).toThrow("a name CRIU never writes");
  expect(() => checkCriuFileNames([entry(".hidden")])).toThrow("a name CRIU never writes");
  for (const n of ["restore.log", "stats-restore", "restore.pid", "parent"]) {
    expect(() => checkCriuFileNames([entry(n)])).toThrow(`"${n}" is one CRIU writes or follows at restore`);
  }
  expect(() => checkCriuFiles("ab".repeat(32), [entry("parent")])).toThrow(/^Image abababababab… refused: CRIU file "parent"/);
});
