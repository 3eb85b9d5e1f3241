/** Small statistics for benchmarks that print JSON. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summary(xs: number[]): { median: number; min: number; max: number; runs: number } {
  return { median: round(median(xs)), min: round(Math.min(...xs)), max: round(Math.max(...xs)), runs: xs.length };
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Wall time of one whole process, in milliseconds. */
export function timeProcess(argv: string[], env?: Record<string, string>): number {
  const t = performance.now();
  const r = Bun.spawnSync(argv, { stdout: "ignore", stderr: "ignore", env });
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}`);
  return ms;
}
