/**
 * How far a long operation (a push, a pull; later a checkpoint, an export, a
 * migration) has got: what it is doing now, and its bytes done of the total.
 * The agent reports these (src/api/local/progress-stream.ts carries them to
 * the CLI), and src/cli/progress.ts draws them on a terminal.
 */
export interface Progress {
  /** What it is doing now, in a word or two: "sending", "receiving", "committing". */
  phase: string;
  /** Bytes done in this phase. */
  bytes: number;
  /** Bytes this phase will take in all; null when not known. */
  totalBytes: number | null;
}

/** Told of progress as it happens (often: throttle before drawing or sending). */
export type OnProgress = (p: Progress) => void;
