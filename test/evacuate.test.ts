/**
 * `autopod evacuate` between three real agents on a LAN (routed pod network):
 * A's running pods move live to B and C, spread, while a client streams to
 * one of them and the counters keep counting; they come home with --return.
 * A peer whose (fake, fixture-root) status says it needs a reboot gets
 * nothing; a migration whose peer dies midway is tried on the other peer;
 * with no peer reachable the pods are suspended to A's disk and
 * restored, with their state, after A's agent restarts. --dry-run moves
 * nothing; bad input is refused with a clear message; a peer sends a pod back
 * only to the host it came from.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";
import { clientReport, expectCountWithoutGap, startClient, waitUntil } from "./_migrate.ts";

const T = 300_000;

let lan: TestCluster;
let a: TestHost;
let b: TestHost;
let c: TestHost;
const roots: string[] = [];
let podCount = 0;

beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("ev", ["a", "b", "c"], { routed: true });
  [a, b, c] = lan.hosts as [TestHost, TestHost, TestHost];
  await lan.formCluster("evac", ["a", "b", "c"]);
  // Each agent's status checks look at a fixture root, so a test can make a host "need" a reboot.
  for (const h of [a, b, c]) {
    const root = mkdtempSync(join(tmpdir(), "autopod-evac-status-"));
    roots.push(root);
    for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
    appendFileSync(h.configPath, ["", "[status]", `root = "${root}"`, "lock_timeout_seconds = 5", ""].join("\n"));
    await h.killAgent("SIGTERM");
    // Failpoints allowed, none set: a test sets the one it drives through the local API.
    await h.startAgent(undefined, {}, ["--failpoints", ""]);
  }
}, 180_000);
afterAll(async () => {
  await lan?.dispose();
  for (const r of roots) rmSync(r, { recursive: true, force: true });
}, 120_000);

/** A pod counting into /count (its root) every 10 ms, with an echo server on port 7000. */
async function startCounter(h: TestHost): Promise<{ name: string; ip: string }> {
  const name = `ev${++podCount}`;
  const pod = await h.run(name, ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done & exec nc -ll -p 7000 -e cat"]);
  return { name, ip: pod.address.split("/")[0]! };
}

/** Which host runs each pod now (state "running" on exactly one). */
async function placement(names: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [host, h] of [
    ["a", a],
    ["b", b],
    ["c", c],
  ] as const) {
    for (const p of await h.pods()) if (names.includes(p.name) && p.state === "running") out[p.name] = out[p.name] ? `${out[p.name]}+${host}` : host;
  }
  return out;
}

async function agentGet(h: TestHost, path: string): Promise<Record<string, unknown>> {
  const r = await fetch(`http://agent${path}`, { unix: h.socket });
  return (await r.json()) as Record<string, unknown>;
}

interface EvacReport {
  pods: Array<{
    pod: string;
    outcome: string;
    to?: string;
    reason?: string;
    freezeMs?: number;
    bytesSent?: number;
    attempts?: { to: string; reason: string }[];
  }>;
  wallMs: number;
  dryRun: boolean;
}

describe("autopod evacuate", () => {
  rootTest(
    "bad input: an unknown peer in --to, --parallel 0, --return with plan flags; nothing moves",
    async () => {
      const { name } = await startCounter(a);
      const unknown = await a.cli(["evacuate", "--to", "nowhere"]);
      expect(unknown.exitCode).toBe(2);
      expect(unknown.stderr).toContain('--to "nowhere" is not a peer of this host (its peers: b, c)');
      const self = await a.cli(["evacuate", "--to", "a"]);
      expect(self.stderr).toContain('--to "a" is this host');
      const zero = await a.cli(["evacuate", "--parallel", "0"]);
      expect(zero.exitCode).toBe(2);
      expect(zero.stderr).toContain('--parallel "0": expected a whole number from 1 to 16');
      // The API refuses it too, whatever the client.
      const api = await fetch("http://agent/v1/evacuate", { unix: a.socket, method: "POST", body: JSON.stringify({ parallel: 0 }) });
      expect(api.status).toBe(400);
      const extra = await fetch("http://agent/v1/evacuate", { unix: a.socket, method: "POST", body: JSON.stringify({ to: ["b"], kill: true }) });
      expect(extra.status).toBe(400);
      const ret = await a.cli(["evacuate", "--return", "--dry-run"]);
      expect(ret.stderr).toContain("--return takes no --dry-run");
      expect(await placement([name])).toEqual({ [name]: "a" });
      await a.ok(["rm", "--force", name]);
    },
    T,
  );

  rootTest(
    "A's pods move live to B and C, spread, a client streaming all along loses nothing; --dry-run first moves nothing; --return brings them home",
    async () => {
      const pods = [await startCounter(a), await startCounter(a), await startCounter(a), await startCounter(a)];
      const names = pods.map((p) => p.name);

      const plan = JSON.parse(await a.ok(["evacuate", "--dry-run", "--json"], T)) as EvacReport;
      expect(plan.dryRun).toBe(true);
      expect(plan.pods.map((p) => p.outcome)).toEqual(["migrated", "migrated", "migrated", "migrated"]);
      expect(plan.pods.filter((p) => p.to === "b").length).toBe(2);
      expect(plan.pods.filter((p) => p.to === "c").length).toBe(2);
      expect(await placement(names)).toEqual(Object.fromEntries(names.map((n) => [n, "a"])));
      expect(existsSync(join(a.stateDir, "evacuation.json"))).toBe(false);

      await Bun.sleep(300);
      const client = startClient(lan.client, pods[0]!.ip);
      let report: Awaited<ReturnType<typeof clientReport>>;
      let there: EvacReport;
      let back: { pods: Array<{ pod: string; outcome: string; from?: string }> };
      try {
        await Bun.sleep(700);
        there = JSON.parse(await a.ok(["evacuate", "--parallel", "2", "--json"], T)) as EvacReport;
        const where = await placement(names);
        await Bun.sleep(1000);

        // A peer sends a pod back only to where it came from: C, a member, asking B for A's pod is refused.
        const onB = Object.keys(where).find((n) => where[n] === "b")!;
        const tls = (h: TestHost, f: string) => readFileSync(join(h.stateDir, "tls", f), "utf8");
        const pem = { ca: tls(c, "ca.pem"), cert: tls(c, "host.pem"), key: tls(c, "host.key") };
        const url = `${lan.urlOf(1)}/v1/evacuations/return`;
        expect(await lan.clientGet(url, pem, "POST", JSON.stringify({ origin: "c", pod: onB }))).toContain(
          `came to this host from \\"a\\", not from \\"c\\": only its origin may take it back`,
        );
        expect(await lan.clientGet(url, pem, "POST", JSON.stringify({ origin: "mallory", pod: onB }))).toContain("is not a peer of this host");
        expect(await lan.clientGet(url, pem, "POST", JSON.stringify({ origin: "a", pod: "../etc" }))).toContain("Invalid pod name");
        expect(await lan.clientGet(url, { ca: pem.ca }, "POST", JSON.stringify({ origin: "a", pod: onB }))).toStartWith("refused");
        expect((await placement([onB]))[onB]).toBe("b");

        expect(Object.values(where).sort()).toEqual(["b", "b", "c", "c"]);
        const record = JSON.parse(readFileSync(join(a.stateDir, "evacuation.json"), "utf8"));
        expect(record.pods.map((p: { pod: string; to: string }) => `${p.pod}:${p.to}`).sort()).toEqual(names.map((n) => `${n}:${where[n]}`).sort());

        back = JSON.parse(await a.ok(["evacuate", "--return", "--json"], T));
        await Bun.sleep(1000);
      } finally {
        report = await clientReport(client);
      }
      expect(there.dryRun).toBe(false);
      for (const p of there.pods) {
        expect(p.outcome).toBe("migrated");
        expect(p.freezeMs).toBeGreaterThan(0);
        expect(p.bytesSent).toBeGreaterThan(0);
      }
      expect(back.pods.map((p) => p.outcome)).toEqual(["returned", "returned", "returned", "returned"]);
      expect(await placement(names)).toEqual(Object.fromEntries(names.map((n) => [n, "a"])));
      expect(existsSync(join(a.stateDir, "evacuation.json"))).toBe(false);
      expect(report.errors).toEqual([]);
      expect(report.closed).toBe(false);
      expect(report.sent).toBeGreaterThan(500);
      expect(report.received).toBe(report.sent);
      for (const n of names) expect(expectCountWithoutGap(await a.ok(["exec", n, "cat", "/count"]))).toBeGreaterThan(100);
      await a.ok(["rm", "--force", ...names]);
    },
    T,
  );

  rootTest(
    "a peer whose (fake) status root says it needs a reboot gets nothing",
    async () => {
      const cRoot = roots[2]!;
      writeFileSync(join(cRoot, "run/reboot-required.pkgs"), "linux-image-amd64\n");
      writeFileSync(join(cRoot, "run/reboot-required"), "*** System restart required ***\n");
      try {
        await waitUntil("C's verdict: reboot_required", async () => (await agentGet(c, "/v1/evacuate")).verdict === "reboot_required");
        const pods = [await startCounter(a), await startCounter(a)];
        const names = pods.map((p) => p.name);
        // Offered C alone, nothing goes there: the pods stay (never killed).
        const onlyC = await a.cli(["evacuate", "--to", "c", "--no-suspend", "--json"], T);
        expect(onlyC.exitCode).toBe(1);
        expect((JSON.parse(onlyC.stdout) as EvacReport).pods.map((p) => `${p.outcome}: ${p.reason}`)).toEqual([
          'stayed: no peer can take it: host "c" needs a reboot itself',
          'stayed: no peer can take it: host "c" needs a reboot itself',
        ]);
        const r = await a.cli(["evacuate", "--json"], T);
        expect(r.stderr).toContain('not a destination: host "c" needs a reboot itself');
        const there = JSON.parse(r.stdout) as EvacReport;
        expect(there.pods.map((p) => `${p.outcome}:${p.to}`)).toEqual(["migrated:b", "migrated:b"]);
        expect(await placement(names)).toEqual(Object.fromEntries(names.map((n) => [n, "b"])));
        expect((await c.pods()).filter((p) => names.includes(p.name))).toEqual([]);
        await a.ok(["evacuate", "--return"], T);
        expect(await placement(names)).toEqual(Object.fromEntries(names.map((n) => [n, "a"])));
        for (const n of names) expectCountWithoutGap(await a.ok(["exec", n, "cat", "/count"]));
        await a.ok(["rm", "--force", ...names]);
      } finally {
        unlinkSync(join(cRoot, "run/reboot-required"));
        unlinkSync(join(cRoot, "run/reboot-required.pkgs"));
        // The next tests need C as a destination again: its status refreshes a few seconds after the files go.
        await waitUntil("C's verdict without reboot_required", async () => (await agentGet(c, "/v1/evacuate")).verdict !== "reboot_required");
      }
    },
    T,
  );

  rootTest(
    "a migration whose peer's agent dies mid-freeze (failpoint) is tried again on the other peer: the report says each attempt, nothing lost, each pod on exactly one host",
    async () => {
      const pods = [await startCounter(a), await startCounter(a)];
      const names = pods.map((p) => p.name);
      // The control: the plan sends one pod to each peer, so the one for C meets the failpoint.
      const plan = JSON.parse(await a.ok(["evacuate", "--dry-run", "--json"], T)) as EvacReport;
      expect(plan.pods.map((p) => p.to).sort()).toEqual(["b", "c"]);
      // C's agent SIGKILLs itself once the pod's files and locked network are made there, while A holds the pod frozen.
      const r = await fetch("http://agent/v1/debug/failpoints/migrate.dest-prepared", {
        unix: c.socket,
        method: "PUT",
        body: JSON.stringify({ actions: "1*kill->off" }),
      });
      expect(r.ok).toBe(true);
      await Bun.sleep(300);
      const client = startClient(lan.client, pods[0]!.ip);
      const client2 = startClient(lan.client, pods[1]!.ip);
      let reports: Array<Awaited<ReturnType<typeof clientReport>>>;
      let out: EvacReport;
      let progress: string;
      try {
        await Bun.sleep(700);
        const res = await a.cli(["evacuate", "--no-suspend", "--json"], T);
        progress = res.stderr;
        if (res.exitCode !== 0) throw new Error(`evacuate exited ${res.exitCode}: ${res.stdout}\n${res.stderr}`);
        out = JSON.parse(res.stdout) as EvacReport;
        await Bun.sleep(1500);
      } finally {
        reports = [await clientReport(client), await clientReport(client2)];
        // C's agent died at the failpoint: start it again (its recovery drops the half-made copy).
        await c.killAgent("SIGKILL");
        await c.startAgent(undefined, {}, ["--failpoints", ""]);
      }
      // The plan is made afresh (the peers' free memory moves): whichever pod went to C first is the one retried.
      const retried = out.pods.find((p) => p.attempts)!;
      const forC = retried.pod;
      expect(retried).toMatchObject({ outcome: "migrated", to: "b" });
      expect(retried.attempts).toHaveLength(1);
      expect(retried.attempts![0]!.to).toBe("c");
      expect(retried.attempts![0]!.reason).toContain('migration to "c" failed');
      expect(progress).toContain('trying "b" instead (attempt 2)');
      expect(out.pods.find((p) => p.pod !== forC)).toMatchObject({ outcome: "migrated", to: "b" });
      expect(out.pods.find((p) => p.pod !== forC)!.attempts).toBeUndefined();
      // C, restarted, does not run (or hold) the pod it was half given: each runs on B alone.
      await Bun.sleep(1000);
      expect(await placement(names)).toEqual({ [names[0]!]: "b", [names[1]!]: "b" });
      expect((await c.pods()).filter((p) => names.includes(p.name))).toEqual([]);
      for (const rep of reports) {
        expect(rep.errors).toEqual([]);
        expect(rep.closed).toBe(false);
        expect(rep.received).toBe(rep.sent);
      }
      for (const n of names) expectCountWithoutGap(await b.ok(["exec", n, "cat", "/count"]));
      expect(
        JSON.parse(readFileSync(join(a.stateDir, "evacuation.json"), "utf8"))
          .pods.map((p: { pod: string; to: string }) => `${p.pod}:${p.to}`)
          .sort(),
      ).toEqual(names.map((n) => `${n}:b`).sort());
      await a.ok(["evacuate", "--return"], T);
      expect(await placement(names)).toEqual({ [names[0]!]: "a", [names[1]!]: "a" });
      await a.ok(["rm", "--force", ...names]);
    },
    T,
  );

  rootTest(
    "no peer reachable: --no-suspend leaves the pods running; otherwise they are suspended to disk, and --return restores them with their state after the agent restarts",
    async () => {
      const pods = [await startCounter(a), await startCounter(a)];
      const names = pods.map((p) => p.name);
      await lan.link(1, false);
      await lan.link(2, false);
      let isLinkUp = false;
      try {
        const stay = await a.cli(["evacuate", "--no-suspend", "--json"], T);
        expect(stay.exitCode).toBe(1);
        const stayed = JSON.parse(stay.stdout) as EvacReport;
        expect(stayed.pods.map((p) => p.outcome)).toEqual(["stayed", "stayed"]);
        expect(stayed.pods[0]!.reason).toContain('host "b" could not be asked');
        expect(stayed.pods[0]!.reason).toContain('host "c" could not be asked');
        expect(await placement(names)).toEqual(Object.fromEntries(names.map((n) => [n, "a"])));

        const sus = JSON.parse(await a.ok(["evacuate", "--json"], T)) as EvacReport;
        expect(sus.pods.map((p) => p.outcome)).toEqual(["suspended", "suspended"]);
        for (const n of names) expect((await a.pod(n)).state).toBe("checkpointed");

        // The "reboot": the agent stops and starts again; the record says what to bring back.
        await a.killAgent("SIGTERM");
        await a.startAgent(undefined, {}, ["--failpoints", ""]);
        // Routed pod network: a restore must know no peer holds the address, so with the peers still
        // unreachable it is refused, clearly, and the pods stay recorded for the next try.
        const early = await a.cli(["evacuate", "--return", "--json"], T);
        expect(early.exitCode).toBe(1);
        const refused = JSON.parse(early.stdout) as { pods: Array<{ outcome: string; reason?: string }> };
        expect(refused.pods.map((p) => p.outcome)).toEqual(["failed", "failed"]);
        expect(refused.pods[0]!.reason).toContain("Cannot make sure the pod address is free in the cluster");
        for (const n of names) expect((await a.pod(n)).state).toBe("checkpointed");

        await lan.link(1, true);
        await lan.link(2, true);
        isLinkUp = true;
        const home = JSON.parse(await a.ok(["evacuate", "--return", "--json"], T)) as { pods: Array<{ outcome: string }> };
        expect(home.pods.map((p) => p.outcome)).toEqual(["restored", "restored"]);
        await Bun.sleep(500);
        for (const n of names) {
          expect((await a.pod(n)).state).toBe("running");
          expect(expectCountWithoutGap(await a.ok(["exec", n, "cat", "/count"]))).toBeGreaterThan(10);
        }
        expect(existsSync(join(a.stateDir, "evacuation.json"))).toBe(false);
      } finally {
        if (!isLinkUp) {
          await lan.link(1, true);
          await lan.link(2, true);
        }
      }
      await a.ok(["rm", "--force", ...names]);
    },
    T,
  );
});

describe("autopod evacuate on a single host, no cluster", () => {
  rootTest(
    "the pods are suspended to disk and --return restores them with their state after the agent restarts",
    async () => {
      const h = await TestHost.start("ev1");
      try {
        const p = await h.run("solo", ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done"]);
        expect(p.state).toBe("running");
        await Bun.sleep(500);
        const sus = JSON.parse(await h.ok(["evacuate", "--json"], T)) as EvacReport;
        expect(sus.pods).toEqual([{ pod: "solo", outcome: "suspended", reason: "this host has no peers", freezeMs: sus.pods[0]!.freezeMs }]);
        expect((await h.pod("solo")).state).toBe("checkpointed");
        expect(JSON.parse(readFileSync(join(h.stateDir, "evacuation.json"), "utf8")).pods).toEqual([
          { pod: "solo", outcome: "suspended", image: expect.stringMatching(/^[0-9a-f]{64}$/), at: expect.any(String) },
        ]);
        await h.killAgent("SIGTERM");
        await h.startAgent();
        const home = JSON.parse(await h.ok(["evacuate", "--return", "--json"], T)) as { pods: Array<{ pod: string; outcome: string }> };
        expect(home.pods).toEqual([{ pod: "solo", outcome: "restored" }]);
        await Bun.sleep(500);
        // A counter started afresh would write 1 again: without a gap or repeat, its memory came back.
        expect(expectCountWithoutGap(await h.ok(["exec", "solo", "cat", "/count"]))).toBeGreaterThan(40);
        // Nothing left to bring home.
        expect(await h.ok(["evacuate", "--return"])).toBe("no pods are away");
      } finally {
        await h.dispose();
      }
    },
    T,
  );
});
