#!/usr/bin/env bun
/**
 * The idle agent's own CPU (issue 17): utime + stime of the agent process
 * from /proc/PID/stat (not the machine's, which others load), over SECONDS
 * with no pods, then over SECONDS with PODS idle pods (`sleep`), as JSON,
 * with the ticks (10 ms) of each 10-s window to show when it woke; and how
 * long SIGTERM takes while the agent's first status collection (apt-get) runs.
 * Usage (root): bun bench/idle.ts   (uses dist/autopod: run `bun build.ts` first)
 * IDLE_SECONDS=N per phase (default 120), PODS=N (default 50), SETTLE=N seconds before each phase (default 10).
 */
import { readFileSync } from "node:fs";
import { TestHost } from "../test/_pods.ts";
import { round } from "./_stats.ts";

const SECONDS = Number(process.env.IDLE_SECONDS ?? 120);
const PODS = Number(process.env.PODS ?? 50);
const SETTLE = Number(process.env.SETTLE ?? 10);

if (process.getuid?.() !== 0) {
  console.error("bench/idle.ts needs root (namespaces, mounts, cgroups)");
  process.exit(1);
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

async function measure(host: TestHost, pid: number) {
  // The agent's first status collection (apt-get, seconds of parsing under load) is not idleness.
  await host.cli(["status", "--from-agent", "--json"], 300_000);
  await Bun.sleep(SETTLE * 1000);
  const windows: number[] = [];
  const start = cpuTicks(pid);
  let last = start;
  for (let t = 0; t < SECONDS; t += 10) {
    await Bun.sleep(Math.min(10, SECONDS - t) * 1000);
    const now = cpuTicks(pid);
    windows.push(now - last);
    last = now;
  }
  const ticks = last - start;
  return { seconds: SECONDS, cpu_ms: ticks * 10, cpu_percent: round((ticks / 100 / SECONDS) * 100, 3), ticks_per_10s: windows };
}

const host = await TestHost.start("idle");
try {
  const pid = host.agent!.pid;
  const noPods = await measure(host, pid);
  for (let i = 0; i < PODS; i++) await host.run(`idle${i}`, ["sleep", "100000"]);
  const withPods = await measure(host, pid);
  // A fresh agent collects the status at once: stopping it must not wait for apt-get.
  await host.killAgent("SIGTERM");
  await host.startAgent();
  const t0 = performance.now();
  await host.killAgent("SIGTERM");
  const sigtermMs = round(performance.now() - t0, 0);
  await host.startAgent();
  console.log(
    JSON.stringify({ bench: "idle", agent_pid: pid, no_pods: noPods, [`with_${PODS}_pods`]: withPods, sigterm_during_first_status_ms: sigtermMs }, null, 2),
  );
} finally {
  await host.dispose();
}
