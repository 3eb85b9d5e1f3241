#!/usr/bin/env bun
/**
 * The agent's cost while it refreshes the patch status in the background, on
 * this host's real package manager, as JSON. One agent (the compiled binary)
 * runs in its own network namespace with status.refresh_seconds = 60 (the
 * shortest allowed); /proc/PID/stat and /proc/PID/status are sampled every
 * SAMPLE_MS: its own CPU (utime + stime), its children's (cutime + cstime:
 * apt-get and friends, counted when reaped), its resident memory, and that of
 * the children it is running.
 *
 * Phases:
 * - startup: from the spawn until the agent answers, and until its first
 *   report (that first check runs in the background);
 * - idle: IDLE_SECONDS after the first report, when no refresh is due: the
 *   baseline, and proof that the agent's own checks do not set its file
 *   watches off (no collections there);
 * - schedule: until SCHEDULE_SECONDS after the first report (default 130, so
 *   two scheduled refreshes): CPU per scheduled refresh, net of the idle rate;
 * - forced: FORCED refreshes back to back through GET /v1/status?refresh=true
 *   (a refresh interval of zero): CPU and wall per refresh, and whether
 *   memory keeps growing.
 *
 * Usage (root): bun bench/status-agent.ts
 * BIN=path picks the binary (default: a private build of the working tree,
 * .cache/bench/autopod, so that dist/ is left alone).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { agentKeyOf } from "../src/pods/runtime.ts";
import type { StatusSnapshot } from "../src/status/service.ts";
import { median, round, summary } from "./_stats.ts";

const REPO = resolve(import.meta.dir, "..");
const BUN = resolve(REPO, "node_modules/.bin/bun");
const SAMPLE_MS = Number(process.env.SAMPLE_MS ?? 250);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 30);
const SCHEDULE_SECONDS = Number(process.env.SCHEDULE_SECONDS ?? 130);
const FORCED = Number(process.env.FORCED ?? 20);
const REFRESH_SECONDS = 60;

if (process.getuid?.() !== 0) {
  console.error("bench/status-agent.ts needs root (the agent does)");
  process.exit(1);
}
if (IDLE_SECONDS >= REFRESH_SECONDS || SCHEDULE_SECONDS < IDLE_SECONDS) {
  console.error(`IDLE_SECONDS must be under ${REFRESH_SECONDS}, and SCHEDULE_SECONDS at least IDLE_SECONDS`);
  process.exit(2);
}

/** The binary to measure: BIN, else a private build of the working tree (dist/ may be older, and others use it). */
function binary(): { path: string; origin: string } {
  if (process.env.BIN) return { path: resolve(process.env.BIN), origin: process.env.BIN };
  const out = resolve(REPO, ".cache/bench/autopod");
  const r = Bun.spawnSync([BUN, "build.ts", "--outfile", out], { cwd: REPO, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error("bun build.ts failed");
  return { path: out, origin: "private build of the working tree (.cache/bench/autopod)" };
}

const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;
const PAGE = Number(Bun.spawnSync(["getconf", "PAGESIZE"]).stdout.toString().trim()) || 4096;
const MiB = 2 ** 20;

interface Sample {
  t: number;
  /** CPU seconds: the agent's own, and its reaped children's. */
  own: number;
  children: number;
  rss: number;
  /** Resident memory of the agent's live descendants now. */
  descendantsRss: number;
}

function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" "); // field 3 (state) is index 0
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let kids: number[] = [];
    try {
      for (const task of readdirSync(`/proc/${p}/task`)) {
        kids.push(...readFileSync(`/proc/${p}/task/${task}/children`, "utf8").split(" ").filter(Boolean).map(Number));
      }
    } catch {
      kids = [];
    }
    for (const k of kids) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

function rssOf(pid: number): number {
  try {
    return Number(statFields(pid)[24 - 3]) * PAGE;
  } catch {
    return 0;
  }
}

function sample(pid: number): Sample {
  const f = statFields(pid);
  const n = (field: number) => Number(f[field - 3]);
  return {
    t: performance.now(),
    own: (n(14) + n(15)) / CLK_TCK,
    children: (n(16) + n(17)) / CLK_TCK,
    rss: n(24) * PAGE,
    descendantsRss: descendants(pid).reduce((s, d) => s + rssOf(d), 0),
  };
}

function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

async function api<T>(socket: string, path: string): Promise<T> {
  const r = await fetch(`http://autopod${path}`, { unix: socket } as RequestInit);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}
const snapshot = async (socket: string) => (await api<{ status: StatusSnapshot }>(socket, "/v1/status")).status;
const collections = (s: StatusSnapshot) => s.collections.startup + s.collections.schedule + s.collections.change + s.collections.request;

/** CPU and memory over a list of samples. */
function window(samples: Sample[]) {
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const seconds = (last.t - first.t) / 1000;
  const own = last.own - first.own;
  const children = last.children - first.children;
  return {
    seconds: round(seconds, 1),
    cpu_seconds: { agent: round(own, 3), children: round(children, 3), total: round(own + children, 3) },
    cpu_percent_of_one_cpu: round(((own + children) / seconds) * 100, 3),
    rss_mib: {
      min: round(Math.min(...samples.map((s) => s.rss)) / MiB, 1),
      median: round(median(samples.map((s) => s.rss)) / MiB, 1),
      max: round(Math.max(...samples.map((s) => s.rss)) / MiB, 1),
    },
    children_rss_sampled_max_mib: round(Math.max(...samples.map((s) => s.descendantsRss)) / MiB, 1),
  };
}

const bin = binary();
const id = `sb${process.pid % 100000}`;
const netns = `aptest-${id}`;
const dir = mkdtempSync(join(tmpdir(), "autopod-bench-status-"));
const socket = join(dir, "agent.sock");
const stateDir = join(dir, "state");
const configPath = join(dir, "autopod.toml");
const octet = 100 + Math.floor(Math.random() * 150);
writeFileSync(
  configPath,
  [
    `state_dir = "${stateDir}"`,
    `socket = "${socket}"`,
    "[network]",
    `bridge = "apt${id}"`,
    `subnet = "10.213.${octet}.0/24"`,
    "[status]",
    `refresh_seconds = ${REFRESH_SECONDS}`,
    "",
  ].join("\n"),
);

let agent: ReturnType<typeof Bun.spawn> | null = null;
async function cleanUp(): Promise<void> {
  if (agent && agent.exitCode === null) {
    agent.kill("SIGTERM");
    await agent.exited;
  }
  Bun.spawnSync(["ip", "netns", "del", netns], { stderr: "ignore" });
  const key = existsSync(stateDir) ? agentKeyOf(realpathSync(stateDir)) : null;
  if (key)
    for (const d of [`/sys/fs/cgroup/memory/autopod/${key}`, `/sys/fs/cgroup/autopod/${key}`])
      if (existsSync(d)) Bun.spawnSync(["rmdir", d], { stderr: "ignore" });
  rmSync(dir, { recursive: true, force: true });
}
process.on("SIGINT", () => void cleanUp().then(() => process.exit(130)));

try {
  if (Bun.spawnSync(["ip", "netns", "add", netns]).exitCode !== 0) throw new Error(`ip netns add ${netns} failed`);
  mkdirSync(stateDir, { recursive: true });
  const logPath = join(dir, "agent.log");
  const t0 = performance.now();
  // nsenter without --fork execs the agent: its pid is the agent's.
  agent = Bun.spawn(["nsenter", `--net=/run/netns/${netns}`, "--", bin.path, "agent", "--config", configPath], {
    stdio: ["ignore", Bun.file(logPath), Bun.file(logPath)],
  });
  const pid = agent.pid;
  const samples: Sample[] = [];
  const sampler = setInterval(() => {
    try {
      samples.push(sample(pid));
    } catch {
      // the agent is gone; the phases will say so
    }
  }, SAMPLE_MS);
  const mark = () => samples.push(sample(pid)) - 1;

  // Startup.
  let listeningMs = NaN;
  for (;;) {
    if (agent.exitCode !== null) throw new Error(`The agent exited: ${readFileSync(logPath, "utf8")}`);
    try {
      const s = await snapshot(socket);
      if (Number.isNaN(listeningMs)) listeningMs = performance.now() - t0;
      if (s.report) break;
    } catch {
      // not listening yet
    }
    if (performance.now() - t0 > 300_000) throw new Error("no first report within 300 s");
    await Bun.sleep(50);
  }
  const firstReportMs = performance.now() - t0;
  const firstIdx = mark();
  const startupCpu = samples[firstIdx]!;
  const first = await snapshot(socket);

  // Idle, then the schedule.
  const idleEnd = performance.now() + IDLE_SECONDS * 1000;
  while (performance.now() < idleEnd) await Bun.sleep(100);
  const idleIdx = mark();
  const afterIdle = await snapshot(socket);
  const scheduleEnd = samples[firstIdx]!.t + SCHEDULE_SECONDS * 1000;
  while (performance.now() < scheduleEnd) await Bun.sleep(100);
  // Let a refresh that is running end inside the window.
  while ((await snapshot(socket)).refreshing) await Bun.sleep(100);
  const scheduleIdx = mark();
  const afterSchedule = await snapshot(socket);

  // Forced refreshes, back to back.
  const walls: number[] = [];
  const rssAfter: number[] = [];
  for (let i = 0; i < FORCED; i++) {
    const t = performance.now();
    await api(socket, "/v1/status?refresh=true");
    walls.push(performance.now() - t);
    rssAfter.push(sample(pid).rss);
  }
  const forcedIdx = mark();
  const afterForced = await snapshot(socket);
  clearInterval(sampler);
  const peak = peakRss(pid);
  // What set the file watches off, if anything did (another apt or dpkg on this host).
  const changes = readFileSync(logPath, "utf8")
    .split("\n")
    .filter((l) => l.includes("watched files changed"))
    .map((l) => {
      try {
        const j = JSON.parse(l) as { time: string; paths: string[] };
        return { at: j.time, paths: j.paths };
      } catch {
        return l;
      }
    });

  const idle = window(samples.slice(firstIdx, idleIdx + 1));
  const idleRate = idle.cpu_seconds.total / idle.seconds;
  const sched = window(samples.slice(firstIdx, scheduleIdx + 1));
  const scheduled = collections(afterSchedule) - collections(first);
  const forced = window(samples.slice(scheduleIdx, forcedIdx + 1));
  const perScheduled = scheduled > 0 ? (sched.cpu_seconds.total - idleRate * sched.seconds) / scheduled : null;
  const perForced = {
    agent: round(forced.cpu_seconds.agent / FORCED, 3),
    children: round(forced.cpu_seconds.children / FORCED, 3),
    total: round(forced.cpu_seconds.total / FORCED, 3),
  };
  const verdict = afterForced.report!;

  console.log(
    JSON.stringify(
      {
        bench: "status-agent",
        host: { kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(), cpus: navigator.hardwareConcurrency },
        binary: bin.origin,
        report: { verdict: verdict.verdict, updates: verdict.updates, collection_ms: verdict.duration_ms },
        refresh_seconds: REFRESH_SECONDS,
        sample_ms: SAMPLE_MS,
        startup: {
          listening_ms: round(listeningMs),
          first_report_ms: round(firstReportMs),
          cpu_seconds_to_first_report: { agent: round(startupCpu.own, 3), children: round(startupCpu.children, 3) },
          rss_mib_at_first_report: round(startupCpu.rss / MiB, 1),
        },
        idle: { ...idle, collections: collections(afterIdle) - collections(first) },
        schedule: {
          ...sched,
          collections: {
            schedule: afterSchedule.collections.schedule - first.collections.schedule,
            change: afterSchedule.collections.change - first.collections.change,
          },
          cpu_seconds_per_refresh_net_of_idle: perScheduled === null ? null : round(perScheduled, 3),
        },
        forced: {
          refreshes: FORCED,
          wall_ms: summary(walls),
          cpu_seconds_per_refresh: perForced,
          rss_mib_after_each: {
            first: round(rssAfter[0]! / MiB, 1),
            max: round(Math.max(...rssAfter) / MiB, 1),
            last: round(rssAfter[rssAfter.length - 1]! / MiB, 1),
          },
          rss_growth_mib_first_to_last: round((rssAfter[rssAfter.length - 1]! - rssAfter[0]!) / MiB, 1),
          children_rss_sampled_max_mib: forced.children_rss_sampled_max_mib,
          change_collections: afterForced.collections.change - afterSchedule.collections.change,
        },
        agent_peak_rss_mib: round(peak / MiB, 1),
        watch_changes_seen: changes,
        derived: {
          idle_cpu_percent: round(idleRate * 100, 3),
          cpu_percent_at_refresh_seconds_60: round(((perForced.total + idleRate * REFRESH_SECONDS) / REFRESH_SECONDS) * 100, 3),
          cpu_percent_at_default_refresh_3600s: round(((perForced.total + idleRate * 3600) / 3600) * 100, 4),
          status_share_of_that_at_3600s: round((perForced.total / 3600) * 100, 4),
        },
      },
      null,
      2,
    ),
  );
} finally {
  await cleanUp();
}
