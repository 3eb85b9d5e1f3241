#!/usr/bin/env bun
/**
 * A whole unscheduled-update cycle's wall time, from the trigger to the pods
 * home, and its phases, as JSON. One agent on a netns test host; its status
 * checks look at a fixture root; each run puts the reboot-required sentinel
 * there and asks the agent to check (the trigger), then the agent takes the
 * lock, evacuates, runs the update command (a script that records it ran),
 * re-checks, "reboots" (a script that stops the agent and starts it again, as
 * systemd would, and clears the sentinel), and the agent after the reboot
 * re-checks, releases the lock and brings the pods home.
 *
 * Evacuation: EVACUATOR=real (the default) is the agent's own; on this one
 * host with no peer it suspends the pods to disk and restores them after the
 * "reboot" (AutoPod's suspend/resume). EVACUATOR=fake is the test-only fake
 * (policy.test_evacuator_file): the cycle's own cost alone (lock, journal,
 * status checks, commands, agent restart).
 *
 * HOSTS=3: the issue's cycle, with live evacuation to two peers and the pods'
 * return, memhog pods with LAN clients, links shaped to RATE: see
 * bench/_update-cycle-cluster.ts (uses dist/autopod: build it first).
 *
 * Usage (root): bun bench/update-cycle.ts   RUNS=3 PODS=3 EVACUATOR=real|fake
 *               HOSTS=3 bun bench/update-cycle.ts   RUNS=1 PODS=3 MIB=128 RATE=1gbit LOGS=DIR
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { sh, TestHost } from "../test/_pods.ts";
import { autopodArgv, DIST } from "../test/_support.ts";
import { clusterCycle, parseRate } from "./_update-cycle-cluster.ts";
import { round, summary } from "./_stats.ts";

const HOSTS = Number(process.env.HOSTS ?? 1);
const RUNS = Number(process.env.RUNS ?? (HOSTS === 1 ? 3 : 1));
const PODS = Number(process.env.PODS ?? 3);
if (HOSTS !== 1 && HOSTS !== 3) {
  console.error(`HOSTS must be 1 or 3 (got "${process.env.HOSTS}")`);
  process.exit(2);
}
if (![RUNS, PODS].every((n) => Number.isInteger(n) && n >= 1)) {
  console.error("RUNS and PODS take whole numbers from 1");
  process.exit(2);
}
const EVACUATOR = process.env.EVACUATOR ?? "real";
if (EVACUATOR !== "real" && EVACUATOR !== "fake") {
  console.error(`EVACUATOR must be real or fake (got "${EVACUATOR}")`);
  process.exit(2);
}

if (process.getuid?.() !== 0) {
  console.error("bench/update-cycle.ts needs root (the agent does)");
  process.exit(1);
}

if (HOSTS === 3) {
  const MIB = Number(process.env.MIB ?? 128);
  if (!Number.isInteger(MIB) || MIB < 1) {
    console.error("MIB takes a whole number from 1");
    process.exit(2);
  }
  if (!existsSync(DIST)) {
    console.error(`${DIST} is missing: run \`node_modules/.bin/bun build.ts\` first`);
    process.exit(1);
  }
  const rate = process.env.RATE ?? "1gbit";
  parseRate(rate);
  console.log(JSON.stringify(await clusterCycle({ runs: RUNS, pods: PODS, mib: MIB, rate, logs: process.env.LOGS ?? "" }), null, 2));
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), "autopod-bench-cycle-"));
const root = join(dir, "root");
for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
writeFileSync(join(dir, "update.sh"), `#!/bin/sh\necho ran >> ${dir}/update.log\n`);
let host: TestHost | null = null;

async function events(h: TestHost): Promise<UpdateEvent[]> {
  const r = await h.cli(["events", "--json", "-n", "100000"]);
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateEvent[]) : [];
}

try {
  host = await TestHost.start("ub", {
    extraConfig: [
      "[status]",
      `root = "${root}"`,
      "lock_timeout_seconds = 5",
      "[policy]",
      'mode = "evacuate-update-reboot"',
      'trigger = ["reboot-required"]',
      "check_seconds = 1",
      `update_command = ["/bin/sh", "${join(dir, "update.sh")}"]`,
      `reboot_command = ["setsid", "-f", "/bin/bash", "${join(dir, "reboot.sh")}"]`,
      ...(EVACUATOR === "fake" ? [`test_evacuator_file = "${join(dir, "evacuations.jsonl")}"`] : []),
    ],
  });
  const h = host;
  writeFileSync(
    join(dir, "reboot.sh"),
    [
      "#!/bin/bash",
      "set -eu",
      `kill -TERM "$(cat ${h.stateDir}/agent.pid)"`,
      `flock -w 60 ${h.stateDir}/agent.lock true`,
      `rm -f ${root}/run/reboot-required`,
      `exec nsenter --net=/run/netns/${h.netns} -- ${autopodArgv().join(" ")} agent --config ${h.configPath} >> ${dir}/agent-after-reboot.log 2>&1`,
    ].join("\n") + "\n",
  );
  chmodSync(join(dir, "reboot.sh"), 0o755);
  // Pods with some memory of their own: a shell counting into a file.
  for (let i = 0; i < PODS; i++) await h.run(`p${i}`, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /count; usleep 100000; done"]);

  const runs: {
    wall_ms: number;
    phases: Record<string, number>;
    evacuation_wall_ms: number | null;
    pod_freeze_ms: (number | null)[];
    outcomes: string[];
    return_wall_ms: number | null;
  }[] = [];
  for (let run = 0; run < RUNS; run++) {
    const seen = (await events(h)).at(-1)?.seq ?? 0;
    writeFileSync(join(root, "run/reboot-required"), "*** System restart required ***\n");
    const t0 = performance.now();
    await fetch("http://autopod/v1/status?refresh=true", { unix: h.socket } as RequestInit);
    let finished: UpdateEvent | undefined;
    for (;;) {
      finished = (await events(h)).find((e) => e.seq > seen && (e.kind === "cycle.finished" || e.kind === "cycle.failed"));
      if (finished) break;
      if (performance.now() - t0 > 300_000) throw new Error("the cycle did not finish within 5 minutes");
      await Bun.sleep(100);
    }
    if (finished.kind === "cycle.failed") throw new Error(`the cycle failed: ${finished.msg}`);
    const cycle = (await events(h)).filter((e) => e.cycle === finished!.cycle);
    const evac = cycle.find((e) => e.kind === "evacuation.done")?.fields as { pods?: { freezeMs?: number; outcome: string }[]; wall_ms?: number } | undefined;
    const back = cycle.find((e) => e.kind === "return.done")?.fields as { wall_ms?: number } | undefined;
    runs.push({
      wall_ms: round(performance.now() - t0, 0),
      phases: finished.fields!.phases as Record<string, number>,
      evacuation_wall_ms: evac?.wall_ms ?? null,
      pod_freeze_ms: (evac?.pods ?? []).map((p) => p.freezeMs ?? null),
      outcomes: (evac?.pods ?? []).map((p) => p.outcome),
      return_wall_ms: back?.wall_ms ?? null,
    });
    // Wait for the agent to settle (the next look finds nothing to do) before the next run.
    await Bun.sleep(1500);
  }
  const phaseNames = [...new Set(runs.flatMap((r) => Object.keys(r.phases)))];
  console.log(
    JSON.stringify(
      {
        bench: "update-cycle",
        evacuator: EVACUATOR === "fake" ? "fake (policy.test_evacuator_file): moves nothing" : "real: no peer, so the pods are suspended to disk and restored",
        lock: "none",
        pods: PODS,
        runs: RUNS,
        trigger_to_home_ms: summary(runs.map((r) => r.wall_ms)),
        phases_ms: Object.fromEntries(phaseNames.map((p) => [p, summary(runs.map((r) => r.phases[p] ?? 0))])),
        each: runs,
      },
      null,
      2,
    ),
  );
} finally {
  if (host) {
    const pidFile = join(host.stateDir, "agent.pid");
    const pods = await host.pods().catch(() => []);
    if (pods.length) await host.cli(["rm", "--force", ...pods.map((p) => p.name)]);
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGTERM");
        await sh(["flock", "-w", "60", join(host.stateDir, "agent.lock"), "true"], { timeoutMs: 70_000 });
      } catch {
        // gone
      }
    }
    host.agent = null;
    await host.dispose();
  }
  rmSync(dir, { recursive: true, force: true });
}
