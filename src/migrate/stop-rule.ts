/**
 * When pre-copy rounds stop paying. Without soft-dirty tracking every round is
 * a full `criu dump --leave-running` (the pod pauses for it) and only chunks
 * the peer lacks travel; so a round costs its dump whatever it sends, and the
 * rounds converge to the pages dirtied during one dump plus one push.
 *
 * Freeze after a round that:
 * - sent at most SMALL_ROUND_BYTES (the final round will be as small: P.Haul's
 *   64 pages, rounded up to 1 MiB since a dump alone costs more than sending that);
 * - sent more than SHRINK_FACTOR of what the round before sent (no longer
 *   shrinking fast: another round would only add a pause; P.Haul stops at +10%,
 *   but here every round pauses the pod);
 * - sent so little that sending it again, at the best rate a round reached,
 *   takes at most RESEND_FRACTION of the shortest pause a round caused: on a fast
 *   link SMALL_ROUND_BYTES is far below what matters, and another round would cost
 *   the pod a whole pause (about 0.9 s for 1 GiB here) to save the freeze a few tens
 *   of milliseconds. A small, idle service (nginx, Redis) then freezes after its
 *   2nd round, not its 3rd;
 * - or is the maxRounds-th.
 * Measured here (1 GiB, 10 MB/s dirtied, 1 Gbit shaped, quiet): rounds of 1078,
 * 176, 62 and 42 MB, each pausing the pod about 0.9 s, sent at about 66 MB/s at
 * best; the 4th saved the freeze 0.3 s (the shrink rule stops there). LXD's rule,
 * at least 70% of pages skipped, would freeze after the 2nd round with 176 MB
 * (2.7 s of sending) still to go inside the freeze.
 */
export const SMALL_ROUND_BYTES = 1 << 20;
export const SHRINK_FACTOR = 0.5;
export const RESEND_FRACTION = 0.1;

/** Whether to freeze now, given the rounds so far. */
export function shouldFreeze(rounds: readonly RoundTiming[], maxRounds: number): boolean {
  const n = rounds.length;
  if (n >= maxRounds) return true;
  if (n === 0) return false;
  const last = rounds[n - 1]!;
  if (last.bytesSent <= SMALL_ROUND_BYTES) return true;
  if (n >= 2 && last.bytesSent > rounds[n - 2]!.bytesSent * SHRINK_FACTOR) return true;
  // The shortest pause: one round slowed by a busy host says little about what the next would cost.
  const pauseMs = Math.min(...rounds.map((r) => r.pauseMs));
  return resendMs(rounds, last) <= pauseMs * RESEND_FRACTION;
}

/** How long the bytes of `round` would take to send again, at the best rate any round reached. */
function resendMs(rounds: readonly RoundTiming[], round: RoundTiming): number {
  const bytesPerMs = Math.max(...rounds.map((r) => (r.pushMs > 0 ? r.bytesSent / r.pushMs : 0)));
  return bytesPerMs > 0 ? round.bytesSent / bytesPerMs : round.pushMs;
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
  const transferMs = resendMs(rounds, last);
  return Math.round(Math.max(0, last.ms - last.pushMs) + transferMs + last.pauseMs + FREEZE_OVERHEAD_MS);
}
