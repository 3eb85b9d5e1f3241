/**
 * When pre-copy rounds stop paying. Without soft-dirty tracking every round is
 * a full `criu dump --leave-running` (the pod pauses for it) and only chunks
 * the peer lacks travel; so a round costs its dump whatever it sends, and the
 * rounds converge to the pages dirtied during one dump plus one push.
 *
 * Stop after a round that sent at most SMALL_ROUND_BYTES (the final round will
 * be as small: P.Haul's 64 pages, rounded up to 1 MiB since a dump alone costs
 * more than sending that), or that sent more than half of what the round
 * before sent (no longer shrinking fast: another round would only add a
 * pause; P.Haul stops at +10%, but here every round pauses the pod), or after
 * maxRounds.
 */
export const SMALL_ROUND_BYTES = 1 << 20;
export const SHRINK_FACTOR = 0.5;

/** Whether to freeze now, given the bytes each round so far sent. */
export function shouldFreeze(bytesPerRound: readonly number[], maxRounds: number): boolean {
  const n = bytesPerRound.length;
  if (n >= maxRounds) return true;
  if (n === 0) return false;
  const last = bytesPerRound[n - 1]!;
  if (last <= SMALL_ROUND_BYTES) return true;
  return n >= 2 && last > bytesPerRound[n - 2]! * SHRINK_FACTOR;
}

/** What a round measured, as far as predicting the freeze needs. */
export interface RoundTiming {
  /** The round's dump paused the pod this long. */
  pauseMs: number;
  /** The whole round: dump, capture, commit, push. */
  ms: number;
  pushMs: number;
  bytesSent: number;
}

/** The freeze beyond dump, delta and CRIU's restore: the peer's checks, network, commit and resume (measured about 0.3-1 s here, loaded). */
export const FREEZE_OVERHEAD_MS = 300;

/**
 * The freeze a final dump would take now, from the rounds measured: a round's dump and capture
 * (its time less its push), the last round's bytes again at the best push rate seen (the final
 * delta is about what one round dirtied), and a restore as long as the dump (CRIU restores
 * about as fast as it dumps; the destination has the last round's files made already), plus
 * FREEZE_OVERHEAD_MS. Null before any round.
 */
export function predictFreezeMs(rounds: readonly RoundTiming[]): number | null {
  const last = rounds.at(-1);
  if (!last) return null;
  const bytesPerMs = Math.max(...rounds.map((r) => (r.pushMs > 0 ? r.bytesSent / r.pushMs : 0)));
  const transferMs = bytesPerMs > 0 ? last.bytesSent / bytesPerMs : last.pushMs;
  return Math.round(Math.max(0, last.ms - last.pushMs) + transferMs + last.pauseMs + FREEZE_OVERHEAD_MS);
}
