#!/usr/bin/env bun
/**
 * Figures for the status service: the median time of a full `autopod status`
 * on this host (from the sources under Bun, and the compiled binary when
 * built), and the cost of the agent's background refresh: collectStatus run
 * repeatedly in one process, with its CPU time (ours and the package
 * manager's) and memory per refresh. bench/status-agent.ts measures the
 * agent itself refreshing in the background.
 * Usage: bun bench/status.ts   (RUNS=10 REFRESHES=20 to change the counts)
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { collectStatus } from "../src/status/index.ts";
import { median, round, summary } from "./_stats.ts";

const repo = resolve(import.meta.dir, "..");
const bun = resolve(repo, "node_modules/.bin/bun");
const dist = resolve(repo, "dist/autopod");
const runs = Number(process.env.RUNS ?? 10);
const refreshes = Number(process.env.REFRESHES ?? 20);
const STATUS_EXITS = new Set([0, 1, 10, 11, 12]);

/** Wall time of `autopod status --json`, and its report's per-check durations. */
function timeStatus(argv: string[]): { ms: number; checks: Record<string, number> } {
  const t = performance.now();
  const r = Bun.spawnSync([...argv, "status", "--json"], { stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - t;
  if (!STATUS_EXITS.has(r.exitCode ?? -1)) throw new Error(`${argv.join(" ")} status exited ${r.exitCode}: ${r.stderr.toString()}`);
  const report = JSON.parse(r.stdout.toString()) as { checks: Array<{ check: string; duration_ms: number }> };
  return { ms, checks: Object.fromEntries(report.checks.map((c) => [c.check, c.duration_ms])) };
}

function cliFigures(argv: string[]) {
  timeStatus(argv); // warm the page cache
  const samples = Array.from({ length: runs }, () => timeStatus(argv));
  const names = Object.keys(samples[0]!.checks);
  return {
    wall_ms: summary(samples.map((s) => s.ms)),
    check_median_ms: Object.fromEntries(names.map((n) => [n, round(median(samples.map((s) => s.checks[n] ?? 0)))])),
  };
}

/** CPU seconds of our waited-for children (cutime + cstime of /proc/self/stat). */
const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;
function childrenCpuSeconds(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[16 - 3]) + Number(f[17 - 3])) / CLK_TCK;
}

async function refreshFigures() {
  await collectStatus(); // warm up: modules loaded, caches filled
  await collectStatus();
  Bun.gc(true);
  const rssStart = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const child0 = childrenCpuSeconds();
  const walls: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < refreshes; i++) {
    const t = performance.now();
    await collectStatus();
    walls.push(performance.now() - t);
    rss.push(process.memoryUsage().rss);
  }
  Bun.gc(true);
  const cpu = process.cpuUsage(cpu0);
  const ownCpu = (cpu.user + cpu.system) / 1e6 / refreshes;
  const childCpu = (childrenCpuSeconds() - child0) / refreshes;
  return {
    refreshes,
    wall_ms: summary(walls),
    cpu_seconds_per_refresh: { autopod: round(ownCpu, 3), package_manager: round(childCpu, 3), total: round(ownCpu + childCpu, 3) },
    cpu_percent_at_default_refresh_3600s: round(((ownCpu + childCpu) / 3600) * 100, 4),
    rss_mib: { before: round(rssStart / 2 ** 20, 1), max: round(Math.max(...rss) / 2 ** 20, 1), after: round(process.memoryUsage().rss / 2 ** 20, 1) },
    rss_growth_mib_over_run: round((process.memoryUsage().rss - rssStart) / 2 ** 20, 1),
  };
}

/** Peak memory of the package manager's query, the heaviest part of a refresh. */
function aptPeakKib(): number | null {
  if (!Bun.which("apt-get") || !Bun.which("time", { PATH: "/usr/bin" })) return null;
  const r = Bun.spawnSync(["/usr/bin/time", "-f", "%M", "apt-get", "--simulate", "-o", "Debug::NoLocking=1", "dist-upgrade"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const last = r.stderr.toString().trim().split("\n").pop() ?? "";
  return /^\d+$/.test(last) ? Number(last) : null;
}

const fromSource = cliFigures([bun, resolve(repo, "src/main.ts")]);
const distKnowsStatus = Bun.file(dist).size > 0 && Bun.spawnSync([dist, "status", "--help"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
const fromBinary = distKnowsStatus ? cliFigures([dist]) : "dist/autopod absent or built before the status command: run `bun build.ts`";

console.log(
  JSON.stringify(
    {
      bench: "status",
      host: { kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(), cpus: navigator.hardwareConcurrency },
      runs,
      autopod_status_from_source: fromSource,
      autopod_status_binary: fromBinary,
      background_refresh_in_one_process: await refreshFigures(),
      apt_get_simulate_peak_rss_kib: aptPeakKib(),
    },
    null,
    2,
  ),
);
