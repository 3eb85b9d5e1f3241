import { describe, expect, test } from "bun:test";
import { packBundle, unpackBundle } from "./criu-bundle-format.ts";

const criu = { path: "bin/criu", mode: 0o755, bytes: new TextEncoder().encode("#!/bin/sh\necho criu\n") };
const lib = { path: "lib/libnl-3.so.200", mode: 0o644, bytes: new Uint8Array(1000).fill(7) };
const header = { criuVersion: "4.2.1", gitId: "autopod-ed8a74321b5a" };

/** A packed bundle whose raw bytes were changed by `edit` (the header's JSON is found by its text). */
function repack(edit: (raw: Buffer) => Buffer): Uint8Array {
  const raw = Buffer.from(Bun.zstdDecompressSync(packBundle(header, [criu, lib])));
  return Bun.zstdCompressSync(edit(raw));
}

describe("CRIU bundle format", () => {
  test("packs and unpacks files with their modes and checksums", () => {
    const { header: h, files } = unpackBundle(packBundle(header, [criu, lib]));
    expect(h.criuVersion).toBe("4.2.1");
    expect(h.gitId).toBe("autopod-ed8a74321b5a");
    expect(files.map((f) => [f.path, f.mode, f.size])).toEqual([
      ["bin/criu", 0o755, criu.bytes.length],
      ["lib/libnl-3.so.200", 0o644, 1000],
    ]);
    expect(Buffer.from(files[1]!.bytes).equals(Buffer.from(lib.bytes))).toBe(true);
  });

  test.each([
    ["../etc/passwd", 'file path "../etc/passwd" is not allowed'],
    ["/bin/criu", 'file path "/bin/criu" is not allowed'],
    ["bin/../../x", 'file path "bin/../../x" is not allowed'],
    ["lib/sub/x.so", 'file path "lib/sub/x.so" is not allowed'],
    ["etc/x", 'file path "etc/x" is not allowed'],
  ])("refuses the path %p", (path, message) => {
    expect(() => packBundle(header, [criu, { ...lib, path }])).toThrow(message);
  });

  test("refuses a bundle without bin/criu, a duplicate, a strange mode or a bad version", () => {
    expect(() => packBundle(header, [lib])).toThrow('has no "bin/criu"');
    expect(() => packBundle(header, [criu, criu])).toThrow('lists "bin/criu" twice');
    expect(() => packBundle(header, [{ ...criu, mode: 0o4755 }])).toThrow('"bin/criu" has mode 4755, not 755 or 644');
    expect(() => packBundle({ ...header, criuVersion: "4.2; rm -rf /" }, [criu])).toThrow('version "4.2; rm -rf /" is not a version');
  });

  test("refuses a changed file, a cut-short bundle, extra bytes and garbage", () => {
    // One byte of the library changed: its SHA-256 no longer matches the header's.
    expect(() =>
      unpackBundle(
        repack((raw) => {
          raw[raw.length - 1] = 8;
          return raw;
        }),
      ),
    ).toThrow(/"lib\/libnl-3\.so\.200" has SHA-256 [0-9a-f]{64}, its header says [0-9a-f]{64}/);
    expect(() => unpackBundle(repack((raw) => raw.subarray(0, raw.length - 10)))).toThrow('cut short in "lib/libnl-3.so.200"');
    expect(() => unpackBundle(repack((raw) => Buffer.concat([raw, Buffer.from("x")])))).toThrow("1 bytes after its last file");
    expect(() => unpackBundle(repack((raw) => Buffer.concat([Buffer.from("X"), raw.subarray(1)])))).toThrow("does not start with its magic line");
    expect(() => unpackBundle(new TextEncoder().encode("not zstd"))).toThrow("does not decompress");
  });
});
