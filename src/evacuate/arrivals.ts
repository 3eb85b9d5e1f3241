/**
 * The other side of an evacuation: which pods came to this host by
 * migration, and from where. A host that asks for a pod back must be the one
 * it came from, and the pod goes back only there. One small JSON file in the
 * state directory, written atomically.
 */
import { join } from "node:path";
import { z } from "zod";
import { readIfExists, writeFileAtomic } from "./_files.ts";

export const ARRIVALS_FILE = "arrivals.json";

const ArrivalsSchema = z.record(z.string().max(63), z.object({ from: z.string().max(63), at: z.string().max(40) }).strict());

export type Arrivals = z.infer<typeof ArrivalsSchema>;

export function readArrivals(stateDir: string): Arrivals {
  const text = readIfExists(join(stateDir, ARRIVALS_FILE));
  if (text === null) return {};
  try {
    const r = ArrivalsSchema.safeParse(JSON.parse(text));
    // A damaged file only means no pod can be asked back: never a reason to fail the agent.
    return r.success ? r.data : {};
  } catch {
    return {};
  }
}

/** Pod `pod` now runs here, migrated from `from`. */
export function recordArrival(stateDir: string, pod: string, from: string): void {
  const a = readArrivals(stateDir);
  a[pod] = { from, at: new Date().toISOString() };
  writeFileAtomic(join(stateDir, ARRIVALS_FILE), JSON.stringify(a));
}

/** Pod `pod` left (migrated on, or removed): no host may ask for it back. */
export function forgetArrival(stateDir: string, pod: string): void {
  const a = readArrivals(stateDir);
  if (!(pod in a)) return;
  delete a[pod];
  writeFileAtomic(join(stateDir, ARRIVALS_FILE), JSON.stringify(a));
}
