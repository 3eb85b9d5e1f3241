/**
 * The verdicts a check, and the host as a whole, can reach, and how they rank.
 */
export const VERDICTS = ["ok", "update_available", "security_update_available", "reboot_required", "not_applicable", "error"] as const;

export type Verdict = (typeof VERDICTS)[number];

/**
 * How much a verdict demands of the host. A definite finding outranks an
 * error: a host that surely needs a reboot needs it even if another check
 * failed. An error outranks "ok", so a failed check can never read as all clear.
 */
const RANK: Record<Verdict, number> = {
  not_applicable: 0,
  ok: 1,
  error: 2,
  update_available: 3,
  security_update_available: 4,
  reboot_required: 5,
};

/** The verdict that demands most of the host; "ok" when there is none. */
export function worstVerdict(verdicts: Iterable<Verdict>): Verdict {
  let worst: Verdict = "ok";
  for (const v of verdicts) if (RANK[v] > RANK[worst]) worst = v;
  return worst;
}

export function isVerdict(s: string): s is Verdict {
  return (VERDICTS as readonly string[]).includes(s);
}
