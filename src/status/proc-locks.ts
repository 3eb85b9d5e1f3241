/**
 * /proc/locks: the file locks the kernel holds, with the pid that took each
 * (-1 for open-file-description locks) and the locked file's device and inode.
 */

export interface ProcLock {
  /** POSIX (fcntl, lockf), FLOCK, OFDLCK, LEASE, DELEG. */
  type: string;
  access: string;
  /** -1 when the kernel does not know (OFD locks). */
  pid: number;
  major: number;
  minor: number;
  inode: number;
  /** True for a process waiting for the lock, not holding it. */
  waiting: boolean;
}

const LINE = /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/;

export function parseProcLocks(text: string): ProcLock[] {
  const out: ProcLock[] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    out.push({
      type: m[2]!,
      access: m[3]!,
      pid: Number(m[4]),
      major: parseInt(m[5]!, 16),
      minor: parseInt(m[6]!, 16),
      inode: Number(m[7]),
      waiting: m[1] !== undefined,
    });
  }
  return out;
}

/** Split a Linux st_dev into major and minor numbers (glibc's gnu_dev_major and gnu_dev_minor). */
export function splitDev(dev: bigint | number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n));
  const minor = Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n));
  return { major, minor };
}
