#!/usr/bin/env bun
/**
 * What the CRIU image check (src/checkpoint/criu-image) costs a restore of
 * an image from another host, as JSON on stdout:
 *   node_modules/.bin/bun bench/criu-image-check.ts [--mib 1024] [--runs 20]
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first).
 *
 * A test host checkpoints two real pods and exports them: a small shell loop
 * and `memhog MIB` (MIB MiB of random bytes). Each export's CRIU files are
 * written to a directory as a restore materializes them, and the check runs
 * on it RUNS times (warm cache, as in a restore, which has just written the
 * files). For scale, the big image is then imported into a second agent and
 * restored there, and the agent's own restore time is reported beside it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkCriuImage, expectedPodOf } from "../src/checkpoint/criu-image/index.ts";
import { fileBytes, openExport } from "../test/_hostile.ts";
import { TestHost, testRootfs } from "../test/_pods.ts";
import { round, summary } from "./_stats.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MIB = Number(arg("mib", "1024"));
const RUNS = Math.max(1, Number(arg("runs", "20")));
const log = (s: string) => console.error(`[bench/criu-image-check] ${s}`);

if (process.getuid?.() !== 0) {
  console.error("bench/criu-image-check.ts needs root (namespaces, mounts, CRIU)");
  process.exit(1);
}
testRootfs();
const work = mkdtempSync(join(tmpdir(), "autopod-bench-criu-check-"));
let host: TestHost | null = null;
let other: TestHost | null = null;

async function waitForLog(h: TestHost, pod: string, re: RegExp): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!re.test((await h.cli(["logs", pod])).stdout)) {
    if (Date.now() > deadline) throw new Error(`pod ${pod} never logged ${re}`);
    await Bun.sleep(200);
  }
}

/** Materialize an export's CRIU files, then time the check on them. */
function measure(file: string, label: string) {
  const x = openExport(file);
  const dir = join(work, label);
  mkdirSync(dir);
  let bytes = 0;
  for (const e of x.manifest.criu) {
    if (e.type !== "file") continue;
    writeFileSync(join(dir, e.path), fileBytes(x, e));
    bytes += e.size;
  }
  const expected = expectedPodOf(x.manifest.pod as Parameters<typeof expectedPodOf>[0]);
  const ms: number[] = [];
  let last = checkCriuImage("0".repeat(64), dir, expected);
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    last = checkCriuImage("0".repeat(64), dir, expected);
    ms.push(performance.now() - t);
  }
  rmSync(dir, { recursive: true, force: true });
  return { criuFiles: x.manifest.criu.length, criuBytes: bytes, checkMs: summary(ms), ...last };
}

try {
  host = await TestHost.start("bq");
  other = await TestHost.start("br");
  await host.run("small", ["sh", "-c", "i=0; while :; do i=$((i+1)); sleep 0.05; done"]);
  await host.run("big", ["/usr/local/bin/memhog", String(MIB)]);
  await waitForLog(host, "big", /ready/);
  const small = join(work, "small.export");
  const big = join(work, "big.export");
  log("checkpoint and export both pods");
  await host.ok(["checkpoint", "small", "--leave-running", "--export", small], 600_000);
  await host.ok(["checkpoint", "big", "--leave-running", "--export", big], 600_000);
  log("measure the check");
  const smallFig = measure(small, "small");
  const bigFig = measure(big, "big");
  log("restore the big image on a second agent, for scale");
  const id = await other.ok(["image", "import", big], 600_000);
  const restored = JSON.parse(await other.ok(["restore", id.slice(0, 16), "--name", "big", "--ip", `${other.prefix}.9/24`, "--json"], 600_000));
  console.log(
    JSON.stringify(
      {
        bench: "criu-image-check",
        runs: RUNS,
        small: smallFig,
        big: { mib: MIB, ...bigFig },
        bigRestore: { totalMs: restored.totalMs, criuMs: restored.criuMs, phases: restored.phases },
        checkShareOfRestore: round(bigFig.checkMs.median / restored.totalMs, 6),
      },
      null,
      2,
    ),
  );
} finally {
  await host?.dispose();
  await other?.dispose();
  rmSync(work, { recursive: true, force: true });
}
