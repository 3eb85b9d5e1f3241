#!/usr/bin/env bun
/**
 * Figures of `autopod evacuate`, as JSON on stdout:
 *   node_modules/.bin/bun bench/evacuate.ts [--pods 4] [--mib 128] [--rate 1gbit] [--parallel 1,2]
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first). The
 * issue's figure is --pods 10 --mib 410 (4 GiB in all) over 1gbit.
 *
 * Three hosts (network namespaces with their own agents) in the routed pod
 * network, every uplink shaped with `tc tbf` to --rate. For each --parallel
 * value: host a starts --pods fresh pods, each `memhog MIB` (random data, so
 * nothing dedups) beside an echo server, with a client on the LAN sending it
 * a line every 5 ms; then `autopod evacuate --parallel N` moves them to b and
 * c. Reported: wall time, and wall time over the link time of all the pods'
 * memory (the source's uplink carries all of it); each pod's freeze and the
 * longest gap its client saw (the client-seen downtime), their sum and
 * maximum; bytes sent; whether every connection was kept. Then
 * `evacuate --return` brings them home (its wall time too), and the pods are
 * removed before the next value, so each run starts from peers without their
 * chunks. Everything made is removed at the end.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "../test/_cluster.ts";
import type { TestHost } from "../test/_pods.ts";
import { BUN, DIST, REPO } from "../test/_support.ts";
import { round } from "./_stats.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const PODS = Number(arg("pods", "4"));
const MIB = Number(arg("mib", "128"));
const RATE = arg("rate", "1gbit");
const PARALLEL = arg("parallel", "1,2").split(",").map(Number);
const RATE_BYTES_PER_S = parseRate(RATE) / 8;
/** After the evacuation, how long the clients get to resume (a frozen pod's client backs off its retransmissions). */
const SETTLE_MS = 6000;

if (process.getuid?.() !== 0) {
  console.error("bench/evacuate.ts needs root (namespaces, mounts, CRIU)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`node_modules/.bin/bun build.ts\` first`);
  process.exit(1);
}
if (!Number.isInteger(PODS) || PODS < 1 || !Number.isInteger(MIB) || MIB < 1 || PARALLEL.some((p) => !Number.isInteger(p) || p < 1 || p > 16)) {
  console.error("--pods and --mib take whole numbers from 1; --parallel a comma-separated list of 1 to 16");
  process.exit(1);
}

function parseRate(r: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(r);
  if (!m) throw new Error(`--rate ${r}: expected like 1gbit or 400mbit`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9, "": 1 }[(m[2] ?? "").toLowerCase() as "k" | "m" | "g" | ""];
}

interface ClientReport {
  sent: number;
  received: number;
  closed: boolean;
  errors: string[];
  maxGapMs: number;
}

interface EvacReport {
  pods: Array<{ pod: string; outcome: string; to?: string; reason?: string; freezeMs?: number; bytesSent?: number; rounds?: number }>;
  wallMs: number;
}

let generation = 0;

function returnFailures(stdout: string): string[] {
  try {
    const r = JSON.parse(stdout) as { pods: Array<{ pod: string; outcome: string; reason?: string }> };
    return r.pods.filter((p) => p.outcome === "failed").map((p) => `${p.pod}: ${p.reason ?? "no reason given"}`);
  } catch {
    return [`the return printed no report: ${stdout.slice(0, 500)}`];
  }
}

function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

async function run(lan: TestCluster, a: TestHost, parallel: number) {
  const g = ++generation;
  const names = Array.from({ length: PODS }, (_, i) => `e${g}p${i}`);
  const ips: string[] = [];
  for (const n of names) {
    const pod = await a.run(n, ["sh", "-c", `/usr/local/bin/memhog ${MIB} & exec nc -ll -p 7000 -e cat`], ["--memory", `${MIB + 128}m`]);
    await a.waitForLog(n, /ready/, 0, 300_000);
    ips.push(pod.address.split("/")[0]!);
  }
  const clients = ips.map((ip) =>
    Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "5"], {
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  await Bun.sleep(2000);
  const loadBefore = loadAverage();
  const t0 = performance.now();
  const out = await a.cli(["evacuate", "--parallel", String(parallel), "--json"], 3_600_000);
  const wallMs = Math.round(performance.now() - t0);
  if (out.stdout === "") throw new Error(`evacuate failed: ${out.stderr}`);
  const r = JSON.parse(out.stdout) as EvacReport;
  await Bun.sleep(SETTLE_MS);
  const reports: ClientReport[] = [];
  for (const c of clients) {
    c.kill("SIGTERM");
    reports.push(JSON.parse((await new Response(c.stdout).text()).trim()) as ClientReport);
  }
  const t1 = performance.now();
  const back = await a.cli(["evacuate", "--return", "--json"], 3_600_000);
  const returnWallMs = Math.round(performance.now() - t1);
  const freezes = r.pods.map((p) => p.freezeMs ?? 0);
  const gaps = reports.map((c) => Math.round(c.maxGapMs));
  const linkMs = ((PODS * MIB * 2 ** 20) / RATE_BYTES_PER_S) * 1000; // not `<< 20`: 4 GiB overflows a 32-bit shift
  const result = {
    parallel,
    wallMs,
    linkMs: Math.round(linkMs),
    wallOverLinkTime: round(wallMs / linkMs, 3),
    outcomes: r.pods.map((p) => `${p.outcome}${p.to ? `:${p.to}` : ""}`),
    freezeMs: freezes,
    freezeSumMs: freezes.reduce((s, x) => s + x, 0),
    freezeMaxMs: Math.max(...freezes),
    clientGapMs: gaps,
    clientGapSumMs: gaps.reduce((s, x) => s + x, 0),
    clientGapMaxMs: Math.max(...gaps),
    bytesSent: r.pods.reduce((s, p) => s + (p.bytesSent ?? 0), 0),
    // Pre-copy rounds each pod needed: rounds of pods moving at once compete for the uplink and the CPU.
    rounds: r.pods.map((p) => p.rounds ?? null),
    connectionsKept: reports.every((c) => !c.closed && c.errors.length === 0 && c.received === c.sent),
    returnWallMs,
    returned: back.exitCode === 0,
    /** Why a pod did not come back (it stays, running, where it went). */
    returnFailures: returnFailures(back.stdout),
    /** The machine's load average before the evacuation and after the return: other work on it moves every figure. */
    loadAverage: { before: loadBefore, after: loadAverage() },
  };
  await a.cli(["rm", "--force", ...names]);
  return result;
}

const lan = await TestCluster.start("be", ["a", "b", "c"], { routed: true });
try {
  const [a] = lan.hosts as [TestHost];
  await lan.formCluster("bench", ["a", "b", "c"]);
  for (let i = 0; i < 3; i++) await lan.shape(i, RATE);
  const runs = [];
  for (const p of PARALLEL) runs.push(await run(lan, a, p));
  const base = runs.find((x) => x.parallel === 1);
  console.log(
    JSON.stringify(
      {
        pods: PODS,
        podMiB: MIB,
        link: RATE,
        runs,
        wallVsParallel1: base ? Object.fromEntries(runs.map((x) => [x.parallel, round(x.wallMs / base.wallMs, 3)])) : null,
        loadAverage: loadAverage(),
      },
      null,
      2,
    ),
  );
} finally {
  await lan.dispose();
}
