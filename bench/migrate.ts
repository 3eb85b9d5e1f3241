#!/usr/bin/env bun
/**
 * Figures of live migration, as JSON on stdout:
 *   node_modules/.bin/bun bench/migrate.ts [--mib 1024] [--rate 1gbit] [--dirty-per-s 1]
 *     [--modes precopy,stop-and-copy] [--logs DIR]
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first).
 *
 * Hosts (network namespaces with their own agents) in the routed pod network,
 * every uplink shaped with `tc tbf` to --rate: "a", where the pod starts, and
 * one fresh host per mode. A pod holds `memhog MIB` (random data) beside an
 * echo server; the bench overwrites 1% of its pages --dirty-per-s times a
 * second (1: about 10 MB/s for 1 GiB) wherever it runs (post-copy: on the
 * destination while its pages are pulled, so it faults on missing pages), and
 * a client on the LAN sends a line every millisecond. Then, in one run, for
 * each of --modes in order, the pod moves with `autopod migrate --mode MODE` from where it is to that mode's
 * fresh host, which holds none of its chunks (so every mode pays for the
 * whole pod over the same link): the client's longest gap, the freeze and its
 * phases (the destination's restore by phase too), rounds and bytes per
 * round, total time, and the ratio of the gaps (stop-and-copy over precopy);
 * for postcopy also the page pull after the destination's copy ran (how long
 * until every page had arrived, bytes pulled).
 * Everything made is removed at the end.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
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
const MIB = Number(arg("mib", "1024"));
const RATE = arg("rate", "1gbit");
const DIRTY_PER_S = Number(arg("dirty-per-s", "1"));
const MODES = arg("modes", "precopy,stop-and-copy,postcopy").split(",").filter(Boolean);
/** Where to copy each agent's log before the hosts go ("": nowhere). */
const LOGS = arg("logs", "");
/** The JSON key of each mode's figures (kept from the bench's first form). */
const KEYS: Record<string, string> = { precopy: "precopy", "stop-and-copy": "stopAndCopy", postcopy: "postcopy" };
const RATE_BYTES_PER_S = parseRate(RATE) / 8;
/** After a move, how long the client gets to resume (its retransmission backs off while the pod is frozen). */
const SETTLE_MS = 8000;

if (process.getuid?.() !== 0) {
  console.error("bench/migrate.ts needs root (namespaces, mounts, CRIU)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`node_modules/.bin/bun build.ts\` first`);
  process.exit(1);
}

for (const m of MODES) {
  if (!KEYS[m]) {
    console.error(`--modes: "${m}" is not a mode (${Object.keys(KEYS).join(", ")})`);
    process.exit(2);
  }
}

function parseRate(r: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(r);
  if (!m) throw new Error(`--rate ${r}: expected like 1gbit or 400mbit`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9, "": 1 }[(m[2] ?? "").toLowerCase() as "k" | "m" | "g" | ""];
}

/** memhog's host pid: the child of the pod's pid 1 (sh started it, then exec'd the echo server). */
async function memhogPid(h: TestHost, pod: string): Promise<number | null> {
  const p = (await h.pods()).find((x) => x.name === pod);
  if (!p?.pid) return null;
  try {
    const kids = readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    return kids.find((k) => readFileSync(`/proc/${k}/comm`, "utf8").trim() === "memhog") ?? null;
  } catch {
    return null;
  }
}

interface ClientReport {
  sent: number;
  received: number;
  closed: boolean;
  errors: string[];
  maxGapMs: number;
  /** When the longest gap began and ended (ms since the epoch): against the agents' logs (--logs), where the freeze's edges are. */
  maxGapAt?: { from: number; to: number };
}

/** One move of the pod, from where it is to the host named `to` (which lacks its chunks), in `mode`, with a fresh client. */
async function move(lan: TestCluster, to: string, ip: string, mode: string, where: { host: TestHost; next?: TestHost }) {
  const from = where.host;
  // The dirtier follows the pod to the destination as soon as it runs there (post-copy: while its pages are pulled).
  where.next = lan.hosts[names.indexOf(to)]!;
  const fromName = names[lan.hosts.indexOf(from)]!;
  const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  await Bun.sleep(2000);
  const loadAverageBefore = loadAverage();
  const t0 = performance.now();
  // A failed move ends the bench: its client must not outlive it.
  const out = await from.ok(["migrate", "mover", "--to", to, "--mode", mode, "--json"], 1_800_000).catch((e: unknown) => {
    client.kill("SIGKILL");
    throw e;
  });
  const wallMs = Math.round(performance.now() - t0);
  where.host = where.next!;
  await Bun.sleep(SETTLE_MS);
  client.kill("SIGTERM");
  const c = JSON.parse((await new Response(client.stdout).text()).trim()) as ClientReport;
  const r = JSON.parse(out);
  const last = r.rounds.at(-1);
  const dirtiedBeforeFinal = last ? ((MIB * 2 ** 20 * 0.01 * DIRTY_PER_S) / 1000) * last.ms : null;
  return {
    mode,
    from: fromName,
    to,
    loadAverageBefore,
    clientLongestGapMs: Math.round(c.maxGapMs),
    connectionKept: !c.closed && c.errors.length === 0 && c.received === c.sent,
    freezeMs: r.freezeMs,
    predictedFreezeMs: r.predictedFreezeMs,
    tcpCostMs: Math.round(c.maxGapMs - r.freezeMs),
    freezePhases: r.freezePhases,
    restorePhases: r.restorePhases,
    capturePhases: r.capturePhases,
    rounds: r.rounds,
    finalBytes: r.final.bytesSent,
    finalOverDirtied: dirtiedBeforeFinal ? round(r.final.bytesSent / dirtiedBeforeFinal, 3) : null,
    bytesSent: r.bytesSent,
    bytesSentOverPod: round(r.bytesSent / (MIB * 2 ** 20), 3),
    bytesSavedByDedup: r.bytesSavedByDedup,
    totalMs: r.totalMs,
    wallMs,
    totalOverLinkTime: round(r.totalMs / (((MIB * 2 ** 20) / RATE_BYTES_PER_S) * 1000), 3),
    /** Post-copy: after the destination's copy ran, until every page had arrived, and the bytes pulled. */
    allPagesArrivedMs: r.pages?.ms ?? null,
    pagesBytes: r.pages?.bytes ?? null,
    client: c,
  };
}

function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

// "a", and one fresh destination per mode ("b", "c", ...).
const names = ["a", ...MODES.map((_, i) => String.fromCharCode(98 + i))];
const lan = await TestCluster.start("bm", names, { routed: true });
let dirtier: ReturnType<typeof setInterval> | undefined;
try {
  const a = lan.hosts[0]!;
  await lan.formCluster("bench", names);
  for (let i = 0; i < names.length; i++) await lan.shape(i, RATE);
  const pod = await a.run("mover", ["sh", "-c", `/usr/local/bin/memhog ${MIB} & exec nc -ll -p 7000 -e cat`], ["--memory", `${MIB + 256}m`]);
  await a.waitForLog("mover", /ready/, 0, 300_000);
  const ip = pod.address.split("/")[0]!;
  const where: { host: TestHost; next?: TestHost } = { host: a };
  let dirtyOps = 0;
  dirtier = setInterval(async () => {
    // The destination's copy first: the source keeps its frozen one until a post-copy move's pages all arrived.
    const pid = (where.next ? await memhogPid(where.next, "mover") : null) ?? (await memhogPid(where.host, "mover"));
    if (pid === null) return;
    try {
      process.kill(pid, "SIGUSR1");
      dirtyOps++;
    } catch {
      // moving
    }
  }, 1000 / DIRTY_PER_S);
  const results: Record<string, Awaited<ReturnType<typeof move>>> = {};
  for (const [i, mode] of MODES.entries()) results[KEYS[mode]!] = await move(lan, names[i + 1]!, ip, mode, where);
  clearInterval(dirtier);
  const { precopy, stopAndCopy, postcopy } = results;
  console.log(
    JSON.stringify(
      {
        podMiB: MIB,
        link: RATE,
        dirtyBytesPerSecond: Math.round(MIB * 2 ** 20 * 0.01 * DIRTY_PER_S),
        dirtyOps,
        ...results,
        gapRatioStopAndCopyOverPrecopy: precopy && stopAndCopy ? round(stopAndCopy.clientLongestGapMs / Math.max(1, precopy.clientLongestGapMs), 2) : null,
        gapRatioStopAndCopyOverPostcopy: postcopy && stopAndCopy ? round(stopAndCopy.clientLongestGapMs / Math.max(1, postcopy.clientLongestGapMs), 2) : null,
        loadAverage: loadAverage(),
      },
      null,
      2,
    ),
  );
  await where.host.cli(["rm", "--force", "mover"]);
} finally {
  if (dirtier) clearInterval(dirtier);
  if (LOGS) {
    mkdirSync(LOGS, { recursive: true });
    for (const [i, h] of lan.hosts.entries()) if (existsSync(join(h.dir, "agent.log"))) copyFileSync(join(h.dir, "agent.log"), join(LOGS, `${names[i]}.log`));
  }
  await lan.dispose();
}
