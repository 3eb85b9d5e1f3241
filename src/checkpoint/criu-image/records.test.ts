import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { POD_CAPABILITY_MASK } from "../../platform/linux/pod-shape.ts";
import { decodeCore, decodeFiles, decodeInventory, decodeMounts, decodePstree } from "./records.ts";

// Captured from a real `autopod checkpoint` of a pod with a volume at /data (CRIU 4.2.1, Linux 6.18).
const real = (name: string) => new Uint8Array(readFileSync(`${import.meta.dir}/testdata/${name}`));

test("mountpoints: the pod's root overlay, volume, /proc, /dev, its device binds, /dev/pts and /tmp", () => {
  const ms = decodeMounts("mountpoints-13.img", real("mountpoints-13.img"));
  expect(ms.map((m) => `${m.mountpoint} ${m.fstype} ${m.extKey ?? "-"}`)).toEqual([
    "/tmp tmpfs -",
    "/dev/pts devpts -",
    "/dev/tty devtmpfs dev-tty",
    "/dev/urandom devtmpfs dev-urandom",
    "/dev/random devtmpfs dev-random",
    "/dev/full devtmpfs dev-full",
    "/dev/zero devtmpfs dev-zero",
    "/dev/null devtmpfs dev-null",
    "/dev tmpfs -",
    "/proc proc -",
    "/data unsupported vol0",
    "/ overlay -",
  ]);
  const proc = ms.find((m) => m.mountpoint === "/proc")!;
  expect(proc.flags & 0xe).toBe(0xe); // nosuid, nodev, noexec
  expect(ms.find((m) => m.mountpoint === "/")!.mntId).toBe(proc.parentMntId);
});

test("core: the task's name and credentials, its capabilities the pod's bounding set", () => {
  const [core] = decodeCore("core-1.img", real("core-1.img"));
  expect(core!.comm).toBe("sh");
  expect(core!.taskState).toBe(1);
  expect(core!.creds!.uid).toEqual([0, 0, 0, 0]);
  expect(core!.creds!.capBnd).toBe(POD_CAPABILITY_MASK);
  expect(core!.creds!.capEff).toBe(POD_CAPABILITY_MASK);
  expect(core!.creds!.capAmb).toBe(0n);
});

test("files: regular files with their path and mount (a zigzag sint32)", () => {
  const fs = decodeFiles("files.img", real("files.img"));
  const ms = decodeMounts("mountpoints-13.img", real("mountpoints-13.img"));
  const data = fs.find((f) => f.reg?.name === "/data/x")!;
  expect(ms.find((m) => m.mntId === data.reg!.mntId)!.mountpoint).toBe("/data");
  expect(fs.find((f) => f.reg?.name === "/.autopod/pod.log")).toBeDefined();
  expect(fs.every((f) => f.type === 1)).toBe(true);
});

test("pstree and inventory", () => {
  expect(decodePstree("pstree.img", real("pstree.img")).map((p) => [p.pid, p.ppid, p.sid])).toEqual([
    [1, 0, 1],
    [18, 1, 1],
  ]);
  expect(decodeInventory("inventory.img", real("inventory.img")).imgVersion).toBe(2);
});
