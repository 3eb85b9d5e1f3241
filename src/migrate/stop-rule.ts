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
