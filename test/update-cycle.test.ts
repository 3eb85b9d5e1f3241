/**
 * One real agent through the whole unscheduled-update cycle, on a netns test
 * host: its status checks look at a fixture root holding a reboot-required
 * sentinel; the update command is a script that records it ran; the reboot
 * command stops the agent and starts it again, as systemd would after a real
 * reboot (and clears the sentinel, as a boot empties /run). Evacuation is the
 * agent's test-only FAKE evacuator (policy.test_evacuator_file: it moves
 * nothing and records each call), so this test is about the cycle: the window
 * (a test clock), the journal across the "reboot", the events (`autopod
 * events -f` following through the restart), the counters. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { sh, TestHost } from "./_pods.ts";
import { autopod, autopodArgv, rootTest } from "./_support.ts";
import { UpdateTestHost } from "./_update-host.ts";

let host: TestHost | null = null;
const dirs: string[] = [];
let follower: ReturnType<typeof Bun.spawn> | null = null;
let lockless: UpdateTestHost | null = null;
let sleepy: UpdateTestHost | null = null;

afterAll(async () => {
  follower?.kill("SIGKILL");
  await lockless?.dispose();
  await sleepy?.dispose();
  if (host) {
    const pods = await host.pods().catch(() => []);
    if (pods.length) await host.cli(["rm", "--force", ...pods.map((p) => p.name)]);
    await stopAgentByPid(host);
    host.agent = null;
    await host.dispose();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 120_000);

/** Stop whichever agent runs on the host now (the "rebooted" one is not the test's child): SIGTERM, then wait for its state lock. */
async function stopAgentByPid(h: TestHost): Promise<void> {
  const pidFile = join(h.stateDir, "agent.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return; // gone
  }
  await sh(["flock", "-w", "60", join(h.stateDir, "agent.lock"), "true"], { timeoutMs: 70_000 });
}

async function events(h: TestHost): Promise<UpdateEvent[]> {
  const r = await h.cli(["events", "--json"]);
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateEvent[]) : [];
}

async function waitForEvent(h: TestHost, kind: string, timeoutMs: number): Promise<UpdateEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await events(h);
    if (all.some((e) => e.kind === kind)) return all;
    if (Date.now() > deadline) throw new Error(`No "${kind}" event within ${timeoutMs} ms; events: ${all.map((e) => `${e.kind}: ${e.msg}`).join("\n")}`);
    await Bun.sleep(250);
  }
}

/** `kinds` appear in this order (others may come between). */
function inOrder(all: string[], kinds: string[]): string[] {
  let i = 0;
  for (const k of all) if (k === kinds[i]) i++;
  return kinds.slice(i);
}

describe("the update cycle on one agent", () => {
  rootTest(
    "window closed: nothing; window opens: lock, evacuate, update, reboot (agent restart), re-check, release, pods home",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "autopod-update-cycle-"));
      dirs.push(dir);
      const root = join(dir, "root");
      for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
      writeFileSync(join(root, "run/reboot-required"), "*** System restart required ***\n");
      const clock = join(dir, "clock");
      writeFileSync(clock, "2026-11-30T09:58:00Z\n"); // a Monday, two minutes before the window
      const update = join(dir, "update.sh");
      writeFileSync(update, `#!/bin/sh\necho "updated by $PPID" >> ${dir}/update.log\n`);
      const evacFile = join(dir, "evacuations.jsonl");

      host = await TestHost.start("uc", {
        extraConfig: [
          "[status]",
          `root = "${root}"`,
          "lock_timeout_seconds = 5",
          "[policy]",
          'mode = "evacuate-update-reboot"',
          'trigger = ["reboot-required"]',
          "check_seconds = 1",
          `update_command = ["/bin/sh", "${update}"]`,
          `reboot_command = ["setsid", "-f", "/bin/bash", "${join(dir, "reboot.sh")}"]`,
          `test_clock_file = "${clock}"`,
          `test_evacuator_file = "${evacFile}"`,
          "[[policy.window]]",
          'days = ["Mon"]',
          'start_time = "10:00"',
          "length_minutes = 60",
        ],
      });
      const h = host;
      // The "reboot": stop the agent as shutdown would, empty /run as a boot does, start the agent as systemd would.
      writeFileSync(
        join(dir, "reboot.sh"),
        [
          "#!/bin/bash",
          "set -eu",
          `echo "reboot $(date +%s)" >> ${dir}/reboots.log`,
          `kill -TERM "$(cat ${h.stateDir}/agent.pid)"`,
          `flock -w 60 ${h.stateDir}/agent.lock true`,
          `rm -f ${root}/run/reboot-required`,
          `exec nsenter --net=/run/netns/${h.netns} -- ${autopodArgv().join(" ")} agent --config ${h.configPath} >> ${dir}/agent-after-reboot.log 2>&1`,
        ].join("\n") + "\n",
      );
      chmodSync(join(dir, "reboot.sh"), 0o755);

      // A pod that counts: it keeps running through the agent's restart.
      await h.run("counter", ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"]);
      await h.waitForLog("counter", /\b5\n/);

      // Someone watching the events, as a person with `autopod events -f` would.
      follower = Bun.spawn([...autopodArgv(), "events", "-f", "--json"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...h.env } });
      const followed = new Response(follower.stdout as ReadableStream<Uint8Array>).text();

      // Outside the window: said, and nothing moves.
      const before = await waitForEvent(h, "window.closed", 60_000);
      expect(before.find((e) => e.kind === "window.closed")!.fields!.opens_at).toBe("2026-11-30T10:00:00.000Z");
      await Bun.sleep(3000);
      expect(existsSync(evacFile)).toBe(false);
      expect(existsSync(join(dir, "update.log"))).toBe(false);
      expect((await events(h)).map((e) => e.kind)).not.toContain("cycle.started");

      // The window opens.
      writeFileSync(clock, "2026-11-30T10:00:00Z\n");
      const all = await waitForEvent(h, "cycle.finished", 180_000);
      const kinds = all.map((e) => e.kind);
      expect(
        inOrder(kinds, [
          "window.closed",
          "cycle.started",
          "lock.taken",
          "evacuation.started",
          "evacuation.done",
          "update.started",
          "update.done",
          "status.rechecked",
          "reboot.started",
          "cycle.resumed",
          "status.rechecked",
          "lock.released",
          "return.started",
          "return.done",
          "cycle.finished",
        ]),
      ).toEqual([]);
      expect(kinds).not.toContain("cycle.failed");
      const cycleIds = new Set(all.filter((e) => e.kind.startsWith("reboot.") || e.kind === "cycle.finished").map((e) => e.cycle));
      expect(cycleIds.size).toBe(1); // the agent after the reboot finished the same cycle

      // The update ran once, the "reboot" happened once, and the evacuation and the return were asked of different agents.
      expect(readFileSync(join(dir, "update.log"), "utf8").trim().split("\n")).toHaveLength(1);
      expect(readFileSync(join(dir, "reboots.log"), "utf8").trim().split("\n")).toHaveLength(1);
      const evac = readFileSync(evacFile, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { op: string; pid: number; pods: string[]; req?: unknown });
      expect(evac.map((e) => e.op)).toEqual(["evacuate", "bringHome"]);
      expect(evac[0]!.req).toEqual({ suspendFallback: true });
      expect(evac[0]!.pods).toEqual(["counter"]);
      expect(evac[1]!.pid).not.toBe(evac[0]!.pid);
      expect(existsSync(join(h.stateDir, "update/journal.json"))).toBe(false);
      // The agent from before the "reboot" has exited (no timer of the cycle kept it alive after it stopped).
      for (let i = 0; i < 300 && existsSync(`/proc/${evac[0]!.pid}`); i++) await Bun.sleep(100);
      expect(existsSync(`/proc/${evac[0]!.pid}`)).toBe(false);

      // Counters, from the agent after the reboot (they are kept on disk).
      const metrics = await fetch("http://autopod/v1/update/metrics", { unix: h.socket } as RequestInit).then((r) => r.text());
      expect(metrics).toContain("autopod_update_reboots_total 1");
      expect(metrics).toContain('autopod_update_cycles_total{outcome="completed"} 1');
      expect(metrics).toContain('autopod_update_commands_total{result="ok"} 1');
      expect(metrics).toContain('autopod_evacuated_pods_total{outcome="migrated"} 1');
      // And after the status metrics, in the agent's one Prometheus page.
      const page = await fetch("http://autopod/v1/status/metrics", { unix: h.socket } as RequestInit).then((r) => r.text());
      expect(page).toContain("autopod_status_verdict{");
      expect(page).toContain("autopod_update_reboots_total 1");

      // The pod ran on through it all.
      const n = Number((await h.cli(["logs", "counter"])).stdout.trim().split("\n").at(-1));
      await Bun.sleep(1000);
      expect(Number((await h.cli(["logs", "counter"])).stdout.trim().split("\n").at(-1))).toBeGreaterThan(n);
      expect((await h.pod("counter")).state).toBe("running");

      // And a person following the events saw the whole cycle, across the restart.
      await Bun.sleep(500);
      follower.kill("SIGTERM");
      const seen = (await followed)
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as UpdateEvent).kind);
      expect(inOrder(seen, ["window.closed", "cycle.started", "reboot.started", "cycle.resumed", "cycle.finished"])).toEqual([]);
    },
    300_000,
  );

  rootTest(
    "bad policies stop the agent at start with a clear error",
    async () => {
      const d = mkdtempSync(join(tmpdir(), "autopod-bad-policy-"));
      dirs.push(d);
      const cfg = join(d, "autopod.toml");
      const refused = async (policy: string[], re: RegExp) => {
        writeFileSync(cfg, [`state_dir = "${d}/state"`, `socket = "${d}/agent.sock"`, "[policy]", ...policy].join("\n") + "\n");
        const r = await autopod(["agent", "--config", cfg], { timeoutMs: 30_000 });
        expect(r.exitCode).toBe(2);
        expect(r.stderr).toMatch(re);
        expect(existsSync(join(d, "agent.sock"))).toBe(false);
      };
      await refused(['mode = "whenever"'], /policy.mode = "whenever" .*expected one of "off", "notify", "evacuate", "evacuate-update-reboot"/);
      await refused(
        ["[[policy.window]]", "days = []", 'start_time = "02:00"', "length_minutes = 30"],
        /policy.window.0.days = \[\].*a window without days never opens/,
      );
      await refused(["[[policy.window]]", 'days = ["Sun"]', 'start_time = "02:00"', "length_minutes = 0"], /a window of no length never opens/);
      await refused(["[policy.lock]", 'kind = "fleetlock"'], /policy.lock.endpoints \(not set\).*at least one endpoint URL for lock kind "fleetlock"/);
    },
    60_000,
  );

  rootTest(
    "a sentinel that appears starts the cycle when the status sees it, not at the next check_seconds (an hour here)",
    async () => {
      sleepy = await UpdateTestHost.start("us", { checkSeconds: 3600 });
      await sleepy.waitForEvent("update.not_needed", 60_000); // the first look is over: the next is an hour away
      // No refresh asked for: the status service's watch on the sentinel refreshes the report, and the report wakes the cycle.
      writeFileSync(join(sleepy.root, "run/reboot-required"), "*** System restart required ***\n");
      const all = await sleepy.waitForEvent("cycle.finished", 120_000);
      expect(all.map((e) => e.kind)).not.toContain("cycle.failed");
      expect(readFileSync(join(sleepy.dir, "reboots.log"), "utf8").trim().split("\n")).toHaveLength(1);
    },
    240_000,
  );

  rootTest(
    "an unreachable lock service: a clear event, and nothing evacuated",
    async () => {
      lockless = await UpdateTestHost.start("ul", { policy: ["[policy.lock]", 'kind = "etcd"', 'endpoints = ["http://127.0.0.1:9"]'] });
      await lockless.host.run("idle", ["sleep", "100000"]);
      await lockless.needReboot();
      const all = await lockless.waitForEvent("cycle.failed", 60_000);
      const failed = all.find((e) => e.kind === "cycle.failed")!;
      expect(failed.msg).toMatch(/^Update cycle failed at the lock: No etcd endpoint answered \/v3\/lease\/grant: http:\/\/127\.0\.0\.1:9: .*; nothing moved$/);
      expect(all.map((e) => e.kind)).not.toContain("evacuation.started");
      expect(existsSync(join(lockless.dir, "evacuations.jsonl"))).toBe(false);
      expect((await lockless.host.pod("idle")).state).toBe("running");
      const metrics = await fetch("http://autopod/v1/update/metrics", { unix: lockless.host.socket } as RequestInit).then((r) => r.text());
      expect(metrics).toContain('autopod_update_failures_total{step="lock"} 1');
    },
    120_000,
  );
});
