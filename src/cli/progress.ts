/**
 * One progress line on a terminal: phase, bytes (of the total), rate and ETA,
 * redrawn in place at most every 100 ms. Nothing at all is drawn unless both
 * stdout and stderr are terminals and the command was not asked for --json,
 * so pipes, files and scripts see only the command's result.
 *
 *   const line = ProgressLine.forCommand({ json });
 *   const r = await client.pushImage(id, peer, line.isEnabled ? (p) => line.update(p) : undefined);
 *   line.clear(); // before printing the result
 */
import { formatBytes } from "../format.ts";
import type { Progress } from "../progress.ts";

/** Where the line is drawn (process.stderr, or a test's fake). */
export interface ProgressTerminal {
  write(text: string): unknown;
  readonly columns?: number;
}

export interface ProgressLineOptions {
  /** Draw nothing when false. */
  isEnabled: boolean;
  /** Milliseconds since some fixed point (tests pass a fake clock). */
  now?: () => number;
  /** Redraw at most this often (a phase change redraws at once). */
  redrawMs?: number;
}

/** The rate is measured over this much of the recent past. */
const RATE_WINDOW_MS = 3000;

export class ProgressLine {
  readonly isEnabled: boolean;
  readonly #term: ProgressTerminal;
  readonly #now: () => number;
  readonly #redrawMs: number;
  #phase = "";
  #samples: Array<{ t: number; bytes: number }> = [];
  #lastDraw = Number.NEGATIVE_INFINITY;
  #isDrawn = false;

  constructor(term: ProgressTerminal, options: ProgressLineOptions) {
    this.#term = term;
    this.isEnabled = options.isEnabled;
    this.#now = options.now ?? (() => performance.now());
    this.#redrawMs = options.redrawMs ?? 100;
  }

  /** The CLI's line: on stderr, enabled only when stdout and stderr are terminals and not `json`. */
  static forCommand(opts: { json: boolean }): ProgressLine {
    const stderr = process.stderr;
    const term: ProgressTerminal = {
      write: (text) => stderr.write(text),
      // A terminal that does not say its width (0: a pty nobody sized) gets $COLUMNS, or 80.
      get columns() {
        return stderr.columns || Number(process.env.COLUMNS) || 80;
      },
    };
    return new ProgressLine(term, { isEnabled: !opts.json && process.stdout.isTTY === true && stderr.isTTY === true });
  }

  /** Record progress; redraws when the last draw is old enough or the phase changed. */
  update(p: Progress): void {
    if (!this.isEnabled) return;
    const t = this.#now();
    const isNewPhase = p.phase !== this.#phase;
    if (isNewPhase) {
      this.#phase = p.phase;
      this.#samples = [];
    }
    this.#samples.push({ t, bytes: p.bytes });
    while (this.#samples.length > 2 && t - this.#samples[0]!.t > RATE_WINDOW_MS) this.#samples.shift();
    if (!isNewPhase && t - this.#lastDraw < this.#redrawMs) return;
    this.#lastDraw = t;
    const width = Math.max(20, (this.#term.columns || 80) - 1);
    this.#term.write(`\r${this.render(p).slice(0, width)}\x1b[K`);
    this.#isDrawn = true;
  }

  /** The line's text for `p` (without the terminal's control codes). */
  render(p: Progress): string {
    const parts = [p.phase];
    if (p.totalBytes !== null && p.totalBytes > 0) {
      const share = Math.min(1, p.bytes / p.totalBytes);
      parts.push(`${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)} (${Math.floor(share * 100)}%)`);
    } else if (p.bytes > 0 || p.totalBytes === 0) {
      parts.push(formatBytes(p.bytes));
    }
    const rate = this.#rate();
    if (rate !== null) {
      parts.push(`${formatBytes(rate)}/s`);
      if (p.totalBytes !== null && rate > 0 && p.bytes < p.totalBytes) parts.push(`ETA ${formatDuration((p.totalBytes - p.bytes) / rate)}`);
    }
    return parts.join("  ");
  }

  /** Erase the line (call before printing anything else). */
  clear(): void {
    if (!this.#isDrawn) return;
    this.#term.write("\r\x1b[K");
    this.#isDrawn = false;
  }

  /** Bytes per second over the window, once there is something to measure. */
  #rate(): number | null {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.t - first.t < 250) return null;
    return ((last.bytes - first.bytes) / (last.t - first.t)) * 1000;
  }
}

/** "45s", "3m05s", "1h02m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
