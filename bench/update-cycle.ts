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
 * Evacuation: the agent's test-only fake evacuator (policy.test_evacuator_file)
 * until the real one is wired in, so the figures are the cycle's own cost
 * (lock, journal, status checks, commands, agent restart), not the pods'
 * migration (bench/migrate.ts measures that).
 *
 * Usage (root): bun bench/update-cycle.ts   RUNS=3 PODS=3 LOCK=none
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { sh, TestHost } from "../test/_pods.ts";
import { autopodArgv } from "../test/_support.ts";
import { round, summary } from "./_stats.ts";

const RUNS = Number(process.env.RUNS ?? 3);
const PODS = Number(process.env.PODS ?? 3);

if (process.getuid?.() !== 0) {
  console.error("bench/update-cycle.ts needs root (the agent does)");
  process.exit(1);
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
      `test_evacuator_file = "${join(dir, "evacuations.jsonl")}"`,
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
  for (let i = 0; i < PODS; i++) await h.run(`p${i}`, ["sleep", "100000"]);

  const runs: { wall_ms: number; phases: Record<string, number> }[] = [];
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
    runs.push({ wall_ms: round(performance.now() - t0, 0), phases: finished.fields!.phases as Record<string, number> });
    // Wait for the agent to settle (the next look finds nothing to do) before the next run.
    await Bun.sleep(1500);
  }
  const phaseNames = [...new Set(runs.flatMap((r) => Object.keys(r.phases)))];
  console.log(
    JSON.stringify(
      {
        bench: "update-cycle",
        evacuator: "fake (policy.test_evacuator_file): moves nothing",
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
