/**
 * The full unscheduled-update cycle with real evacuation, between three real
 * agents on a LAN (routed pod network): host A's status checks look at a
 * fixture root; a reboot-required sentinel appears there; A's agent, by
 * itself, evacuates its pods live to B and C, runs the update command (a
 * script that records it ran), re-checks, "reboots" (a script that stops A's
 * agent and starts it again, as systemd would, clearing the sentinel), and
 * the agent after the reboot releases the lock and brings the pods home.
 * A client in the LAN's client namespace streams to a pod all along, and the
 * pods count in memory and on disk: nothing is lost. Needs root.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { BUN, isRoot, REPO, rootTest } from "./_support.ts";
import { stopAnyAgent, writeRebootScript } from "./_update-host.ts";

const T = 300_000;
let lan: TestCluster | null = null;
let a: TestHost;
let b: TestHost;
let c: TestHost;
const dirs: string[] = [];
let dir = "";
let rootA = "";

beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("uf", ["a", "b", "c"], { routed: true });
  [a, b, c] = lan.hosts as [TestHost, TestHost, TestHost];
  await lan.formCluster("upd", ["a", "b", "c"]);
  dir = mkdtempSync(join(tmpdir(), "autopod-full-cycle-"));
  dirs.push(dir);
  for (const h of [a, b, c]) {
    const root = mkdtempSync(join(tmpdir(), "autopod-full-cycle-root-"));
    dirs.push(root);
    for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
    const policy =
      h === a
        ? [
            "[policy]",
            'mode = "evacuate-update-reboot"',
            'trigger = ["reboot-required"]',
            "check_seconds = 1",
            `update_command = ["/bin/sh", "${join(dir, "update.sh")}"]`,
            `reboot_command = ["setsid", "-f", "/bin/bash", "${join(dir, "reboot.sh")}"]`,
          ]
        : [];
    if (h === a) rootA = root;
    appendFileSync(h.configPath, ["", "[status]", `root = "${root}"`, "lock_timeout_seconds = 5", ...policy, ""].join("\n"));
    await h.killAgent("SIGTERM");
    await h.startAgent();
  }
  writeFileSync(join(dir, "update.sh"), `#!/bin/sh\necho "updated $(date +%s)" >> ${dir}/update.log\n`);
  writeRebootScript(a, dir, rootA);
}, 240_000);

afterAll(async () => {
  if (lan) {
    await stopAnyAgent(a);
    await a.startAgent().catch(() => {}); // dispose removes the pods through an agent the test owns
    await lan.dispose();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 180_000);

let podCount = 0;
/** A pod counting into /count (its root) every 10 ms, with an echo server on port 7000. */
async function startCounter(h: TestHost): Promise<{ name: string; ip: string }> {
  const name = `uf${++podCount}`;
  const pod = await h.run(name, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done & exec nc -ll -p 7000 -e cat"]);
  return { name, ip: pod.address.split("/")[0]! };
}

function expectCountWithoutGap(text: string): number {
  const lines = text.trim().split("\n").map(Number);
  lines.forEach((n, i) => {
    if (n !== i + 1) throw new Error(`/count line ${i + 1} is ${n}`);
  });
  return lines.length;
}

async function events(h: TestHost): Promise<UpdateEvent[]> {
  const r = await h.cli(["events", "--json", "-n", "100000"]);
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateEvent[]) : [];
}

function inOrder(all: string[], kinds: string[]): string[] {
  let i = 0;
  for (const k of all) if (k === kinds[i]) i++;
  return kinds.slice(i);
}

describe("the full update cycle (real evacuation, three agents)", () => {
  rootTest(
    "A needs a reboot: its pods go live to B and C, A updates and 'reboots', the pods come home; a streaming client and the counters lose nothing",
    async () => {
      const pods = [await startCounter(a), await startCounter(a)];
      const names = pods.map((p) => p.name);
      await Bun.sleep(300);
      const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan!.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), pods[0]!.ip, "7000", "1"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      let all: UpdateEvent[] = [];
      let report: { sent: number; received: number; closed: boolean; errors: string[] };
      try {
        await Bun.sleep(700);
        // The host "needs" a reboot.
        writeFileSync(join(rootA, "run/reboot-required"), "*** System restart required ***\n");
        await fetch("http://autopod/v1/status?refresh=true", { unix: a.socket } as RequestInit);
        const deadline = Date.now() + 240_000;
        for (;;) {
          all = await events(a);
          if (all.some((e) => e.kind === "cycle.finished" || e.kind === "cycle.failed")) break;
          if (Date.now() > deadline) throw new Error(`The cycle did not end: ${all.map((e) => `${e.kind}: ${e.msg}`).join("\n")}`);
          await Bun.sleep(250);
        }
        await Bun.sleep(1000);
      } finally {
        client.kill("SIGTERM");
        report = JSON.parse((await new Response(client.stdout).text()).trim());
      }
      const kinds = all.map((e) => e.kind);
      expect(kinds.filter((k) => k === "cycle.failed")).toEqual([]);
      expect(
        inOrder(kinds, [
          "cycle.started",
          "lock.taken",
          "evacuation.started",
          "evacuation.done",
          "update.done",
          "status.rechecked",
          "reboot.started",
          "cycle.resumed",
          "lock.released",
          "return.done",
          "cycle.finished",
        ]),
      ).toEqual([]);
      const evacuated = all.find((e) => e.kind === "evacuation.done")!.fields!.pods as { pod: string; outcome: string; to?: string }[];
      expect(evacuated.map((p) => p.outcome)).toEqual(["migrated", "migrated"]);
      expect(new Set(evacuated.map((p) => p.to))).toEqual(new Set(["b", "c"])); // spread
      // They came back from where they went (each peer sent its own back).
      const returned = all.find((e) => e.kind === "return.done")!.fields!.pods as { pod: string; outcome: string; from?: string }[];
      expect(returned.map((p) => p.outcome)).toEqual(["returned", "returned"]);
      expect(Object.fromEntries(returned.map((p) => [p.pod, p.from]))).toEqual(Object.fromEntries(evacuated.map((p) => [p.pod, p.to])));
      for (const h of [b, c]) expect((await h.pods()).filter((p) => names.includes(p.name) && p.state === "running")).toEqual([]);
      expect(readFileSync(join(dir, "update.log"), "utf8").trim().split("\n")).toHaveLength(1);
      expect(readFileSync(join(dir, "reboots.log"), "utf8").trim().split("\n")).toHaveLength(1);
      expect(existsSync(join(a.stateDir, "update/journal.json"))).toBe(false);
      // Home, and nothing lost.
      for (const n of names) expect((await a.pod(n)).state).toBe("running");
      expect(report.errors).toEqual([]);
      expect(report.closed).toBe(false);
      expect(report.sent).toBeGreaterThan(500);
      expect(report.received).toBe(report.sent);
      for (const n of names) expect(expectCountWithoutGap(await a.ok(["exec", n, "cat", "/count"]))).toBeGreaterThan(100);
      const metrics = await fetch("http://autopod/v1/update/metrics", { unix: a.socket } as RequestInit).then((r) => r.text());
      expect(metrics).toContain('autopod_evacuated_pods_total{outcome="migrated"} 2');
      expect(metrics).toContain('autopod_returned_pods_total{outcome="returned"} 2');
      expect(metrics).toMatch(/autopod_evacuation_pod_downtime_seconds\{pod="uf1"\} [0-9.]+/);
      await a.ok(["rm", "--force", ...names]);
    },
    T,
  );
});
