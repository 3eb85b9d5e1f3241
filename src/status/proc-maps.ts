/**
 * /proc/PID/maps: a process's memory mappings, each with the device and
 * inode of the file it maps and the file's path ("(deleted)" when unlinked).
 */

export interface Mapping {
  start: bigint;
  end: bigint;
  /** "r-xp" */
  perms: string;
  major: number;
  minor: number;
  inode: number;
  /** The path without the " (deleted)" mark; "" for anonymous memory, "[heap]" and the like for special ones. */
  path: string;
  deleted: boolean;
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ ([0-9a-f]+):([0-9a-f]+) (\d+)(?: +(.*))?$/;
const DELETED = " (deleted)";

export function parseProcMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    let path = m[7] ?? "";
    const deleted = path.endsWith(DELETED);
    if (deleted) path = path.slice(0, -DELETED.length);
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3]!,
      major: parseInt(m[4]!, 16),
      minor: parseInt(m[5]!, 16),
      inode: Number(m[6]),
      path,
      deleted,
    });
  }
  return out;
}

/** True for a mapping of executable code from a file. */
export function isExecutableFileMapping(m: Mapping): boolean {
  return m.perms[2] === "x" && m.inode !== 0 && m.path.startsWith("/");
}
