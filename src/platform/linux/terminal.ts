/** A terminal's window size (TIOCGWINSZ / TIOCSWINSZ), on any fd of it: the caller's terminal, a pty master. */
import type { TerminalSize } from "../pod-host.ts";
import { addressOf, ioctl } from "./libc.ts";

const TIOCGWINSZ = 0x5413;
const TIOCSWINSZ = 0x5414;

/** The size now (Bun's process.stdout caches it and misses resizes); null when `fd` is no terminal or has no size. */
export function terminalSize(fd: number): TerminalSize | null {
  const ws = new Uint16Array(4);
  try {
    ioctl(fd, TIOCGWINSZ, addressOf(ws), "TIOCGWINSZ");
  } catch {
    return null;
  }
  return ws[0]! > 0 && ws[1]! > 0 ? { rows: ws[0]!, cols: ws[1]! } : null;
}

/** Set the terminal's size; the kernel sends SIGWINCH to its foreground processes. */
export function setTerminalSize(fd: number, size: TerminalSize): void {
  ioctl(fd, TIOCSWINSZ, addressOf(new Uint16Array([size.rows, size.cols, 0, 0])), "TIOCSWINSZ");
}
