#!/usr/bin/env bun
/**
 * Figures for the status service: the median time of a full `autopod status`
 * on this host, standalone (--no-cache: apt runs) and answered from the apt
 * cache, each as a ratio to `apt-get -s dist-upgrade` timed in the same
 * run, interleaved, so load on a shared machine falls on all three alike
 * (from the sources under Bun, and the compiled binary when built); and the
 * cost of the agent's background refresh: collectStatus run repeatedly in one
 * process, with its CPU time (ours and the package manager's) and memory per
 * refresh, without and with the cache. bench/status-agent.ts measures the
 * agent itself refreshing in the background. The cache lives in a temporary
 * state directory, not the host's.
 * Usage: bun bench/status.ts   (RUNS=10 REFRESHES=20 to change the counts)
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { collectStatus, statusCacheDir } from "../src/status/index.ts";
import { median, round, summary } from "./_stats.ts";

const repo = resolve(import.meta.dir, "..");
const bun = resolve(repo, "node_modules/.bin/bun");
const dist = resolve(repo, "dist/autopod");
const runs = Number(process.env.RUNS ?? 10);
const refreshes = Number(process.env.REFRESHES ?? 20);
const STATUS_EXITS = new Set([0, 1, 10, 11, 12]);
const stateDir = mkdtempSync(join(tmpdir(), "autopod-bench-status-"));
const env = { ...process.env, AUTOPOD_STATE_DIR: stateDir };

/** Wall time of `autopod status --json`, and its report's per-check durations. */
function timeStatus(argv: string[], extra: string[] = []): { ms: number; checks: Record<string, number> } {
  const t = performance.now();
  const r = Bun.spawnSync([...argv, "status", "--json", ...extra], { stdout: "pipe", stderr: "pipe", env });
  const ms = performance.now() - t;
  if (!STATUS_EXITS.has(r.exitCode ?? -1)) throw new Error(`${argv.join(" ")} status exited ${r.exitCode}: ${r.stderr.toString()}`);
  const report = JSON.parse(r.stdout.toString()) as { checks: Array<{ check: string; duration_ms: number }> };
  return { ms, checks: Object.fromEntries(report.checks.map((c) => [c.check, c.duration_ms])) };
}

/** apt's own resolution, as the apt check runs it. */
function timeApt(): number {
  const t = performance.now();
  const r = Bun.spawnSync(["apt-get", "--simulate", "-o", "Debug::NoLocking=1", "dist-upgrade"], {
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, LC_ALL: "C" },
  });
  if (r.exitCode !== 0) throw new Error(`apt-get --simulate dist-upgrade exited ${r.exitCode}: ${r.stderr.toString()}`);
  return performance.now() - t;
}

function checkMedians(samples: Array<{ checks: Record<string, number> }>): Record<string, number> {
  const names = Object.keys(samples[0]!.checks);
  return Object.fromEntries(names.map((n) => [n, round(median(samples.map((s) => s.checks[n] ?? 0)))]));
}

/** Standalone (--no-cache) and cached `autopod status`, and apt-get alone, interleaved run by run. */
function cliFigures(argv: string[]) {
  timeStatus(argv); // warm the page cache, and fill the apt cache
  const apt: number[] = [];
  const standalone: Array<{ ms: number; checks: Record<string, number> }> = [];
  const cached: Array<{ ms: number; checks: Record<string, number> }> = [];
  for (let i = 0; i < runs; i++) {
    apt.push(timeApt());
    standalone.push(timeStatus(argv, ["--no-cache"]));
    cached.push(timeStatus(argv));
  }
  const aptMedian = median(apt);
  return {
    apt_get_simulate_dist_upgrade_ms: summary(apt),
    standalone_no_cache: {
      wall_ms: summary(standalone.map((s) => s.ms)),
      ratio_to_apt_get: round(median(standalone.map((s) => s.ms)) / aptMedian, 3),
      check_median_ms: checkMedians(standalone),
    },
    cached: {
      wall_ms: summary(cached.map((s) => s.ms)),
      ratio_to_apt_get: round(median(cached.map((s) => s.ms)) / aptMedian, 3),
      check_median_ms: checkMedians(cached),
    },
  };
}

/** CPU seconds of our waited-for children (cutime + cstime of /proc/self/stat). */
const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;
function childrenCpuSeconds(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[16 - 3]) + Number(f[17 - 3])) / CLK_TCK;
}

async function refreshFigures(cacheDir?: string) {
  const collect = () => collectStatus(cacheDir ? { cacheDir } : {});
  await collect(); // warm up: modules loaded, caches filled
  await collect();
  Bun.gc(true);
  const rssStart = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const child0 = childrenCpuSeconds();
  const walls: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < refreshes; i++) {
    const t = performance.now();
    await collect();
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
      background_refresh_in_one_process_cached: await refreshFigures(statusCacheDir(stateDir)),
      apt_get_simulate_peak_rss_kib: aptPeakKib(),
    },
    null,
    2,
  ),
);
rmSync(stateDir, { recursive: true, force: true });
