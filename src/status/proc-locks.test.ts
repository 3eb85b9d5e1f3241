import { expect, test } from "bun:test";
import { parseProcLocks, splitDev } from "./proc-locks.ts";

test("parseProcLocks on a real /proc/locks: flock holder and waiters, lockf, OFD lock without pid", async () => {
  const locks = parseProcLocks(await Bun.file(new URL("testdata/proc-locks.txt", import.meta.url)).text());
  expect(locks).toHaveLength(8);
  expect(locks[0]).toEqual({ type: "FLOCK", access: "WRITE", pid: 8336, major: 0xfe, minor: 0, inode: 15345000, waiting: false });
  expect(locks.filter((l) => l.waiting).map((l) => l.pid)).toEqual([8483, 8488]);
  expect(locks.find((l) => l.type === "OFDLCK")).toMatchObject({ pid: -1, inode: 15345009 });
  expect(locks.find((l) => l.pid === 8489)).toMatchObject({ type: "POSIX", access: "WRITE", inode: 15345001 });
});

test("splitDev decodes st_dev like glibc", () => {
  expect(splitDev(65024)).toEqual({ major: 254, minor: 0 }); // /dev/vda here: fe:00
  expect(splitDev(0x803)).toEqual({ major: 8, minor: 3 });
  expect(splitDev(0x100000n)).toEqual({ major: 0, minor: 256 });
  // glibc's makedev(0x1234, 0x56789): major bits 8-19 and 44-63, minor bits 0-7 and 20-43.
  expect(splitDev((0x234n << 8n) | (0x1n << 44n) | 0x89n | (0x567n << 20n))).toEqual({ major: 0x1234, minor: 0x56789 });
});
