/**
 * A newc cpio archive (the kernel's initramfs format) written from a list of
 * entries, so a guest's root is made without staging a copy of every file or
 * needing a cpio program on the host.
 */
import { closeSync, openSync, readFileSync, statSync, writeSync } from "node:fs";

export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; from: string; mode?: number }
  | { type: "data"; path: string; data: string | Uint8Array; mode?: number }
  | { type: "symlink"; path: string; target: string };

const hex = (n: number) => n.toString(16).padStart(8, "0");
const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Write `entries` (paths relative to the archive's root, parents first) as a newc cpio to `out`. */
export function writeCpio(out: string, entries: readonly CpioEntry[]): void {
  const fd = openSync(out, "w");
  let ino = 1;
  const put = (name: string, mode: number, data: Uint8Array) => {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.byteLength, 0, 0, 0, 0, nameBytes.byteLength, 0];
    const header = Buffer.from(`070701${fields.map(hex).join("")}`);
    writeSync(fd, header);
    writeSync(fd, nameBytes);
    writeSync(fd, Buffer.alloc(pad4(header.byteLength + nameBytes.byteLength)));
    writeSync(fd, data);
    writeSync(fd, Buffer.alloc(pad4(data.byteLength)));
  };
  try {
    for (const e of entries) {
      const name = e.path.replace(/^\/+/, "");
      if (e.type === "dir") put(name, 0o040000 | (e.mode ?? 0o755), new Uint8Array());
      else if (e.type === "symlink") put(name, 0o120777, Buffer.from(e.target));
      else if (e.type === "file") put(name, 0o100000 | (e.mode ?? statSync(e.from).mode & 0o7777), readFileSync(e.from));
      else put(name, 0o100000 | (e.mode ?? 0o644), typeof e.data === "string" ? Buffer.from(e.data) : e.data);
    }
    put("TRAILER!!!", 0, new Uint8Array());
  } finally {
    closeSync(fd);
  }
}
