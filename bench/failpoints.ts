/**
 * What a failpoint costs, as JSON on stdout:
 *   node_modules/.bin/bun bench/failpoints.ts
 *
 * Nanoseconds per call of failpoint() when failpoints are off (a production
 * agent), and when another point is set (a test agent), called plainly and
 * awaited as the checkpoint code does (the await costs a microtask).
 */
import { enableFailpoints, failpoint } from "../src/debug/failpoints.ts";

const N = 10_000_000;

async function measure(label: string): Promise<Record<string, unknown>> {
  let t = performance.now();
  for (let i = 0; i < N; i++) failpoint("checkpoint.dumped");
  const plain = ((performance.now() - t) * 1e6) / N;
  t = performance.now();
  for (let i = 0; i < N / 10; i++) await failpoint("checkpoint.dumped");
  const awaited = ((performance.now() - t) * 1e6) / (N / 10);
  return { label, nsPerCall: Math.round(plain * 10) / 10, nsPerAwaitedCall: Math.round(awaited * 10) / 10 };
}

const results = [await measure("off")];
enableFailpoints("restore.prepared=kill");
results.push(await measure("another point set"));
console.log(JSON.stringify({ calls: N, results }, null, 2));
