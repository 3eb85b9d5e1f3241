/**
 * A pseudo-terminal from the pod's own devpts (its /dev/pts, mounted by
 * pod-init with newinstance): the agent keeps the master, the command in the
 * pod gets the slave, which exists there as /dev/pts/N. The master is found
 * beneath /proc/PID/root through no link the pod could plant, and the slave
 * is opened from the master (TIOCGPTPEER), never by a path.
 */
import { closeSync, constants, fstatSync } from "node:fs";
import { PreconditionError } from "../../errors.ts";
import type { TerminalSize } from "../pod-host.ts";
import { addressOf, ioctl } from "./libc.ts";
import { openBeneath } from "./open-beneath.ts";
import { setTerminalSize } from "./terminal.ts";

const TIOCSPTLCK = 0x40045431;
const TIOCGPTPEER = 0x5441;
const O_CLOEXEC = 0o2000000;
/** /dev/pts/ptmx is character device 5:2. */
const PTMX_RDEV = (5 << 8) | 2;

export interface PodPty {
  /** Non-blocking, close-on-exec: stays with the agent. */
  master: number;
  /** For the command's stdin, stdout and stderr; close it once the command has it. */
  slave: number;
}

/** Open a new terminal pair in the devpts of the pod whose pid 1 is `pid` (as the host sees it). */
export function openPodPty(pid: number, size: TerminalSize): PodPty {
  const root = `/proc/${pid}/root`;
  const master = openBeneath(root, "dev/pts/ptmx", constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK, { crossMounts: true });
  if (master === null) throw new PreconditionError(`The pod (pid ${pid}) has no /dev/pts/ptmx: it cannot give a command a terminal`);
  try {
    if (fstatSync(master).rdev !== PTMX_RDEV) throw new PreconditionError(`The pod's /dev/pts/ptmx (pid ${pid}) is not the terminal multiplexer`);
    ioctl(master, TIOCSPTLCK, addressOf(new Int32Array([0])), "TIOCSPTLCK");
    setTerminalSize(master, size);
    const slave = ioctl(master, TIOCGPTPEER, constants.O_RDWR | constants.O_NOCTTY | O_CLOEXEC, "TIOCGPTPEER");
    return { master, slave };
  } catch (e) {
    closeSync(master);
    throw e;
  }
}
