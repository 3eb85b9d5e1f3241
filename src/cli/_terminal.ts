/**
 * The caller's terminal for `exec -i -t`: stdin as a stream of bytes, raw
 * mode while the session lasts (put back on every way out: return, throw,
 * SIGTERM, SIGHUP, process exit), its size and its resizes (SIGWINCH).
 */
import type { TerminalSize } from "../platform/pod-host.ts";
import { terminalSize as sizeOfFd } from "../platform/linux/terminal.ts";

export interface CallerTerminal {
  /** Stdin, chunk by chunk, until its end or restore(). */
  input(): AsyncIterable<Uint8Array>;
  /** The terminal's size (stdout's or stdin's), or 24 × 80 when neither is a terminal. */
  size(): TerminalSize;
  /** Call `listener` with the new size on each SIGWINCH; returns the unsubscribe. */
  onResize(listener: (s: TerminalSize) => void): () => void;
  /** Leave raw mode, stop reading stdin, drop the signal handlers. Idempotent. */
  restore(): void;
}

const DEFAULT_SIZE: TerminalSize = { rows: 24, cols: 80 };

/** The size of the caller's terminal: stdout's, else stdin's, else 24 × 80. */
export function terminalSize(): TerminalSize {
  return sizeOfFd(1) ?? sizeOfFd(0) ?? DEFAULT_SIZE;
}

/** Take over the caller's terminal; with raw, put stdin's terminal in raw mode (when it is one). */
export function callerTerminal(opts: { raw: boolean }): CallerTerminal {
  const stdin = process.stdin;
  const isRaw = opts.raw && stdin.isTTY === true;
  if (isRaw) stdin.setRawMode(true);
  const resizeListeners = new Set<(s: TerminalSize) => void>();
  const onWinch = () => {
    const s = terminalSize();
    for (const l of resizeListeners) l(s);
  };
  let isRestored = false;
  const restore = () => {
    if (isRestored) return;
    isRestored = true;
    if (isRaw) {
      try {
        stdin.setRawMode(false);
      } catch {
        // the terminal is gone
      }
    }
    stdin.pause();
    stdin.destroy();
    process.off("SIGWINCH", onWinch);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
    process.off("exit", restore);
  };
  // Ended by a signal: the terminal first, then the signal's own default action, as if we had no handler.
  const onSignal = (sig: NodeJS.Signals) => {
    restore();
    process.kill(process.pid, sig);
  };
  process.on("SIGWINCH", onWinch);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("exit", restore);
  return {
    input: () => readStdin(() => isRestored),
    size: terminalSize,
    onResize(listener) {
      resizeListeners.add(listener);
      return () => resizeListeners.delete(listener);
    },
    restore,
  };
}

async function* readStdin(isDone: () => boolean): AsyncGenerator<Uint8Array> {
  for await (const chunk of process.stdin) {
    if (isDone()) return;
    yield typeof chunk === "string" ? new TextEncoder().encode(chunk) : (chunk as Uint8Array);
  }
}
