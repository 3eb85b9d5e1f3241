import { afterEach, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkCriuImage, expectedPodOf } from "./check.ts";
import { ImageRefusedError } from "./errors.ts";

// Real CRIU files of a pod with a read-write volume at /data (see records.test.ts).
const ID = "3f2a".repeat(16);
const POD = { volumes: [{ host: "/srv/vol", pod: "/data", readonly: false }], rootKind: "overlay" as const };
const dirs: string[] = [];

function images(): string {
  const dir = mkdtempSync(join(tmpdir(), "criu-image-check-"));
  dirs.push(dir);
  cpSync(join(import.meta.dir, "testdata"), dir, { recursive: true });
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("a real image of the pod passes, and says what it read", () => {
  const s = checkCriuImage(ID, images(), expectedPodOf(POD));
  expect(s).toMatchObject({ mounts: 12, threads: 1, files: 8 });
  expect(s.bytesRead).toBeGreaterThan(1000);
});

test("a volume the pod spec does not declare is refused, naming the file, the mount and what is allowed", () => {
  const e = (() => {
    try {
      checkCriuImage(ID, images(), expectedPodOf({ volumes: [], rootKind: "overlay" }));
    } catch (x) {
      return x as Error;
    }
  })();
  expect(e).toBeInstanceOf(ImageRefusedError);
  expect(e!.message).toMatch(
    /^Image 3f2a3f2a3f2a… refused: mountpoints-13\.img mount 11 is "unsupported" of "[^"]+" \(root "[^"]+"\) at "\/data"; a pod may only mount \/, \/proc, \/dev/,
  );
});

test("a read-only volume recorded read-write is refused", () => {
  expect(() => checkCriuImage(ID, images(), expectedPodOf({ ...POD, volumes: [{ ...POD.volumes[0]!, readonly: true }] }))).toThrow(
    'at "/data" read-write; the pod\'s volume there is read-only',
  );
});

test("a copy root is not held to the overlay type (CRIU binds --root there whatever the record says)", () => {
  expect(() => checkCriuImage(ID, images(), expectedPodOf({ ...POD, rootKind: "copy" }))).not.toThrow();
});

test("missing or extra metadata files are refused", () => {
  const d = images();
  rmSync(join(d, "inventory.img"));
  expect(() => checkCriuImage(ID, d, expectedPodOf(POD))).toThrow("the image has no inventory.img");
  const d2 = images();
  cpSync(join(d2, "mountpoints-13.img"), join(d2, "mountpoints-14.img"));
  expect(() => checkCriuImage(ID, d2, expectedPodOf(POD))).toThrow("2 mount namespaces");
});

test("a metadata file that is a symlink, or garbage, is refused", () => {
  const d = images();
  rmSync(join(d, "files.img"));
  symlinkSync("/etc/passwd", join(d, "files.img"));
  expect(() => checkCriuImage(ID, d, expectedPodOf(POD))).toThrow("files.img is not a regular file");
  const d2 = images();
  const core = readFileSync(join(d2, "core-1.img"));
  writeFileSync(join(d2, "core-1.img"), core.subarray(0, core.byteLength - 7));
  expect(() => checkCriuImage(ID, d2, expectedPodOf(POD))).toThrow(/refused: core-1\.img/);
});

test("a unix socket bound outside the pod is refused", () => {
  const d = images();
  // files.img with one more entry: a unix socket (type 5) bound at "../../run/x.sock".
  const name = new TextEncoder().encode("../../run/x.sock");
  const usk = [0x08, 0x63, 0x10, 0x01, 0x18, 0x01, 0x20, 0x01, 0x28, 0x00, 0x30, 0x00, 0x38, 0x00, 0x40, 0x00, 0x5a, name.byteLength, ...name];
  const entry = new Uint8Array([0x08, 0x05, 0x10, 0x63, 0x82, 0x01, usk.length, ...usk]);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, entry.byteLength, true);
  const files = readFileSync(join(d, "files.img"));
  writeFileSync(join(d, "files.img"), Buffer.concat([files, len, entry]));
  expect(() => checkCriuImage(ID, d, expectedPodOf(POD))).toThrow('files.img entry 9 is a unix socket bound at "../../run/x.sock", which leaves the pod');
});

test("mutated real files are refused with a named reason or pass, never crash the reader (2,000 mutations)", () => {
  const d = images();
  const names = ["inventory.img", "mountpoints-13.img", "core-1.img", "files.img", "tmpfs-dev-43.tar.gz.img"];
  const originals = new Map(names.map((n) => [n, readFileSync(join(d, n))]));
  let seed = 16;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let refusedCount = 0;
  for (let i = 0; i < 2_000; i++) {
    const name = names[i % names.length]!;
    const b = Buffer.from(originals.get(name)!);
    const kind = rand(4);
    let mutated: Buffer;
    if (kind === 0) mutated = b.subarray(0, rand(b.byteLength));
    else if (kind === 1) {
      b[rand(b.byteLength)] = rand(256);
      mutated = b;
    } else if (kind === 2) {
      const at = rand(b.byteLength);
      b[at] = b[at]! ^ (1 << rand(8));
      mutated = b;
    } else {
      const at = rand(b.byteLength);
      mutated = Buffer.concat([b.subarray(0, at), Buffer.from([rand(256), rand(256), rand(256)]), b.subarray(at)]);
    }
    writeFileSync(join(d, name), mutated);
    try {
      checkCriuImage(ID, d, expectedPodOf(POD));
    } catch (e) {
      if (!(e instanceof ImageRefusedError)) throw new Error(`mutation ${i} of ${name} (kind ${kind}) threw ${String(e)}`);
      refusedCount++;
    }
    writeFileSync(join(d, name), originals.get(name)!);
  }
  expect(refusedCount).toBeGreaterThan(1_000);
}, 60_000);

/** An fdinfo-N.img of these entries (fdinfo_entry: id 1, flags 2, type 3, fd 4; all varints). */
function fdinfoFile(entries: Array<{ id: number; flags: number; type: number; fd: number }>): Uint8Array {
  const varint = (n: number): number[] => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  const parts: number[] = [];
  const u32 = (n: number) => parts.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  u32(0x54564319);
  u32(0x56213732);
  for (const e of entries) {
    const msg = [0x08, ...varint(e.id), 0x10, ...varint(e.flags), 0x18, ...varint(e.type), 0x20, ...varint(e.fd)];
    u32(msg.length);
    parts.push(...msg);
  }
  return new Uint8Array(parts);
}

test("a real fd table passes; this builder writes it byte for byte", () => {
  const d = images();
  const real = new Uint8Array(readFileSync(join(d, "fdinfo-2.img")));
  const rebuilt = fdinfoFile([
    { id: 2, flags: 0, type: 1, fd: 0 },
    { id: 3, flags: 0, type: 1, fd: 1 },
    { id: 3, flags: 0, type: 1, fd: 2 },
    { id: 4, flags: 0, type: 1, fd: 3 },
  ]);
  expect(rebuilt).toEqual(real);
  expect(() => checkCriuImage(ID, d, expectedPodOf(POD))).not.toThrow();
});

test("an fd table that CRIU would wait on for good, or that names files that are not there, is refused (fuzz finding: fd 1 twice)", () => {
  const base = [
    { id: 2, flags: 0, type: 1, fd: 0 },
    { id: 3, flags: 0, type: 1, fd: 1 },
    { id: 3, flags: 1, type: 1, fd: 2 },
  ];
  const cases: Array<[typeof base, string]> = [
    [[...base, { id: 4, flags: 0, type: 1, fd: 1 }], "fdinfo-2.img entry 4 opens fd 1 again; a task has each fd once"],
    [[...base, { id: 4, flags: 65536, type: 1, fd: 3 }], "fdinfo-2.img entry 4 gives fd 3 the flags 65536; an fd has only FD_CLOEXEC (1)"],
    [[...base, { id: 4, flags: 0, type: 1, fd: 1 << 20 }], "fdinfo-2.img entry 4 opens fd 1048576; fds end below 1048576"],
    [[...base, { id: 99, flags: 0, type: 1, fd: 3 }], "fdinfo-2.img entry 4 opens file 99 at fd 3, which files.img does not have"],
    [[...base, { id: 4, flags: 0, type: 2, fd: 3 }], "fdinfo-2.img entry 4 opens file 4 at fd 3 as a pipe; files.img has it as a regular file"],
  ];
  for (const [entries, message] of cases) {
    const d = images();
    writeFileSync(join(d, "fdinfo-2.img"), fdinfoFile(entries));
    expect(() => checkCriuImage(ID, d, expectedPodOf(POD))).toThrow(message);
  }
});
