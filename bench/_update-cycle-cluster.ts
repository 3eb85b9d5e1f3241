/**
 * bench/update-cycle.ts with HOSTS=3: the whole cycle with live evacuation to
 * peers, as the issue's full cycle runs it. Three agents (a, b, c) in the
 * routed pod network, every uplink shaped with `tc tbf` to RATE; PODS pods on
 * a, each `memhog MIB` (random data) beside an echo server, each with a
 * client on the LAN sending a line every 5 ms. a's status checks look at a
 * fixture root; its update command is a script that records it ran; its
 * reboot command stops a's agent and starts it again (test/_update-host.ts).
 * Each run: the sentinel appears and a is asked to check (the trigger); then
 * a, by itself, evacuates live to b and c, updates, "reboots", releases the
 * lock and takes its pods back. Reported: trigger to pods home, the phases
 * from a's own events, each pod's longest client-seen gap out and back,
 * connections kept and messages lost (must be 0). Everything made is removed.
 */
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { TestCluster } from "../test/_cluster.ts";
import type { TestHost } from "../test/_pods.ts";
import { BUN, REPO } from "../test/_support.ts";
import { stopAnyAgent, writeRebootScript } from "../test/_update-host.ts";
import { round, summary } from "./_stats.ts";

export interface ClusterCycleOptions {
  runs: number;
  pods: number;
  mib: number;
  rate: string;
  /** Where to copy the agents' logs and a's events before the hosts go ("": nowhere). */
  logs: string;
}

interface ClientReport {
  sent: number;
  received: number;
  closed: boolean;
  errors: string[];
  maxGapMs: number;
  gaps: { endAt: number; ms: number }[];
}

/**
 * The cycle's milestones on a's event log, in order, and the name of the
 * phase that ends at each (from the one before, the first from the trigger).
 * status.rechecked comes twice: after the update, and after the "reboot".
 */
const MILESTONES: [kind: string, phase: string][] = [
  ["cycle.started", "trigger_to_start"],
  ["lock.taken", "lock"],
  ["evacuation.started", "status_check"],
  ["evacuation.done", "evacuate"],
  ["update.done", "update"],
  ["status.rechecked", "status_recheck"],
  ["reboot.started", "reboot_start"],
  ["cycle.resumed", "reboot_agent_restart"],
  ["status.rechecked", "post_boot_check"],
  ["lock.released", "lock_release"],
  ["return.started", "return_start"],
  ["return.done", "return"],
  ["cycle.finished", "finish"],
];

/** After the pods are home, how long the clients get to resume (a frozen pod's client backs off its retransmissions). */
const SETTLE_MS = 6000;

function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

async function events(h: TestHost): Promise<UpdateEvent[]> {
  const r = await h.cli(["events", "--json", "-n", "100000"]);
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateEvent[]) : [];
}

/** Milestone times (ms after t0) and the phases between them, from one cycle's events. */
function phasesOf(cycle: UpdateEvent[], t0: number): { at: Record<string, number>; phases: Record<string, number> } {
  const at: Record<string, number> = {};
  const phases: Record<string, number> = {};
  let i = 0;
  let last = t0;
  for (const [kind, phase] of MILESTONES) {
    const e = cycle.slice(i).find((x) => x.kind === kind);
    if (!e) continue; // e.g. update.skipped: the next phase counts from the last milestone seen
    i = cycle.indexOf(e) + 1;
    const t = Date.parse(e.time);
    phases[phase] = t - last;
    at[`${kind}${at[kind] === undefined ? "" : "#2"}`] = t - t0;
    last = t;
  }
  return { at, phases };
}

async function oneRun(lan: TestCluster, a: TestHost, rootA: string, o: ClusterCycleOptions, run: number) {
  const names = Array.from({ length: o.pods }, (_, i) => `c${run}p${i}`);
  const ips: string[] = [];
  for (const n of names) {
    const pod = await a.run(n, ["sh", "-c", `/usr/local/bin/memhog ${o.mib} & exec nc -ll -p 7000 -e cat`], ["--memory", `${o.mib + 128}m`]);
    await a.waitForLog(n, /ready/, 0, 300_000);
    ips.push(pod.address.split("/")[0]!);
  }
  const clients = ips.map((ip) =>
    Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "5"], {
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  const reports: ClientReport[] = [];
  let cycle: UpdateEvent[] = [];
  let t0 = 0;
  let seenFinishedMs = 0;
  const loadBefore = loadAverage();
  try {
    await Bun.sleep(2000);
    const seen = (await events(a)).at(-1)?.seq ?? 0;
    writeFileSync(join(rootA, "run/reboot-required"), "*** System restart required ***\n");
    t0 = Date.now();
    await fetch("http://autopod/v1/status?refresh=true", { unix: a.socket } as RequestInit);
    let finished: UpdateEvent | undefined;
    const deadline = t0 + 1_800_000;
    for (;;) {
      const all = await events(a); // empty while a's agent "reboots"
      finished = all.find((e) => e.seq > seen && (e.kind === "cycle.finished" || e.kind === "cycle.failed"));
      if (finished) {
        cycle = all.filter((e) => e.cycle === finished!.cycle);
        break;
      }
      if (Date.now() > deadline) throw new Error(`The cycle did not end within 30 minutes: ${all.map((e) => `${e.kind}: ${e.msg}`).join("\n")}`);
      await Bun.sleep(100);
    }
    seenFinishedMs = Date.now() - t0;
    if (finished.kind === "cycle.failed") throw new Error(`The cycle failed: ${finished.msg}`);
    await Bun.sleep(SETTLE_MS);
  } finally {
    for (const c of clients) {
      c.kill("SIGTERM");
      const text = (await new Response(c.stdout).text()).trim();
      if (text) reports.push(JSON.parse(text) as ClientReport);
    }
  }
  const home = (await a.pods()).filter((p) => names.includes(p.name) && p.state === "running").map((p) => p.name);
  const awayOnPeers = [];
  for (const h of lan.hosts.slice(1)) awayOnPeers.push(...(await h.pods()).filter((p) => names.includes(p.name)).map((p) => p.name));
  const { at, phases } = phasesOf(cycle, t0);
  const returnStarted = t0 + (at["return.started"] ?? Number.POSITIVE_INFINITY);
  // A gap belongs to the move that froze the pod: it started before the return began (out) or after (back).
  const longest = (r: ClientReport, back: boolean) => Math.max(0, ...r.gaps.filter((g) => g.endAt - g.ms >= returnStarted === back).map((g) => g.ms));
  const evac = cycle.find((e) => e.kind === "evacuation.done")?.fields as
    | { pods: { pod: string; outcome: string; to?: string; freezeMs?: number; bytesSent?: number; pagesBytes?: number }[]; wall_ms: number }
    | undefined;
  const back = cycle.find((e) => e.kind === "return.done")?.fields as
    | { pods: { pod: string; outcome: string; from?: string; freezeMs?: number; bytesSent?: number }[]; wall_ms: number }
    | undefined;
  const gapsOut = reports.map((r) => longest(r, false));
  const gapsBack = reports.map((r) => longest(r, true));
  const result = {
    trigger_to_home_ms: at["return.done"] ?? null,
    trigger_to_finished_ms: at["cycle.finished"] ?? null,
    /** When the bench saw cycle.finished (it polls a's events every 100 ms; none while a's agent restarts). */
    bench_saw_finished_ms: seenFinishedMs,
    phases_ms: phases,
    milestones_ms: at,
    agent_phases_ms: cycle.find((e) => e.kind === "cycle.finished")?.fields?.phases ?? null,
    evacuation: {
      wall_ms: evac?.wall_ms ?? null,
      outcomes: (evac?.pods ?? []).map((p) => `${p.outcome}${p.to ? `:${p.to}` : ""}`),
      freeze_ms: (evac?.pods ?? []).map((p) => p.freezeMs ?? null),
      bytes_sent: (evac?.pods ?? []).reduce((s, p) => s + (p.bytesSent ?? 0), 0),
      /** Post-copy's page pulls, after each pod ran on its peer (not in bytes_sent). */
      pages_bytes: (evac?.pods ?? []).reduce((s, p) => s + (p.pagesBytes ?? 0), 0),
    },
    return: {
      wall_ms: back?.wall_ms ?? null,
      outcomes: (back?.pods ?? []).map((p) => `${p.outcome}${p.from ? `:${p.from}` : ""}`),
      freeze_ms: (back?.pods ?? []).map((p) => p.freezeMs ?? null),
      bytes_sent: (back?.pods ?? []).reduce((s, p) => s + (p.bytesSent ?? 0), 0),
    },
    client_gap_out_ms: gapsOut,
    client_gap_back_ms: gapsBack,
    client_gap_out_max_ms: Math.max(...gapsOut),
    client_gap_back_max_ms: Math.max(...gapsBack),
    connections_kept: reports.length === clients.length && reports.every((r) => !r.closed && r.errors.length === 0),
    messages_lost: reports.reduce((s, r) => s + (r.sent - r.received), 0),
    client_errors: reports.flatMap((r) => r.errors).slice(0, 10),
    pods_home: home.length,
    pods_left_on_peers: awayOnPeers,
    load_average: { before: loadBefore, after: loadAverage() },
  };
  await a.cli(["rm", "--force", ...names]);
  for (const h of lan.hosts.slice(1)) {
    const left = (await h.pods()).filter((p) => names.includes(p.name)).map((p) => p.name);
    if (left.length) await h.cli(["rm", "--force", ...left]);
  }
  return result;
}

/** The cluster cycle's figures as one JSON object. */
export async function clusterCycle(o: ClusterCycleOptions): Promise<Record<string, unknown>> {
  const dirs: string[] = [];
  const lan = await TestCluster.start("bu", ["a", "b", "c"], { routed: true });
  const [a] = lan.hosts as [TestHost];
  try {
    await lan.formCluster("bench", ["a", "b", "c"]);
    for (let i = 0; i < 3; i++) await lan.shape(i, o.rate);
    const dir = mkdtempSync(join(tmpdir(), "autopod-bench-cycle3-"));
    dirs.push(dir);
    let rootA = "";
    for (const h of lan.hosts) {
      const root = join(dir, `root-${lan.hosts.indexOf(h)}`);
      for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
      const policy =
        h === a
          ? [
              "[policy]",
              'mode = "evacuate-update-reboot"',
              'trigger = ["reboot-required"]',
              "return = true",
              "check_seconds = 1",
              `update_command = ["/bin/sh", "${join(dir, "update.sh")}"]`,
              `reboot_command = ["setsid", "-f", "/bin/bash", "${join(dir, "reboot.sh")}"]`,
              "[policy.lock]",
              'kind = "none"',
            ]
          : [];
      if (h === a) rootA = root;
      appendFileSync(h.configPath, ["", "[status]", `root = "${root}"`, "lock_timeout_seconds = 5", ...policy, ""].join("\n"));
      await h.killAgent("SIGTERM");
      await h.startAgent();
    }
    writeFileSync(join(dir, "update.sh"), `#!/bin/sh\necho "updated $(date +%s)" >> ${dir}/update.log\n`);
    writeRebootScript(a, dir, rootA);
    const runs: Awaited<ReturnType<typeof oneRun>>[] = [];
    for (let r = 0; r < o.runs; r++) {
      runs.push(await oneRun(lan, a, rootA, o, r));
      await Bun.sleep(1500); // a settles (its next look finds nothing to do) before the next run
    }
    const phaseNames = MILESTONES.map(([, p]) => p).filter((p) => runs.some((r) => p in r.phases_ms));
    const home = runs.map((r) => r.trigger_to_home_ms).filter((x): x is number => x !== null);
    return {
      bench: "update-cycle",
      hosts: 3,
      evacuator: "real: live migration to the peers b and c (auto mode), and back",
      lock: "none",
      pods: o.pods,
      pod_mib: o.mib,
      link: o.rate,
      runs: o.runs,
      trigger_to_home_ms: home.length ? summary(home) : null,
      phases_ms: Object.fromEntries(phaseNames.map((p) => [p, summary(runs.map((r) => (r.phases_ms as Record<string, number>)[p] ?? 0))])),
      messages_lost: runs.reduce((s, r) => s + r.messages_lost, 0),
      connections_kept: runs.every((r) => r.connections_kept),
      pods_home: runs.every((r) => r.pods_home === o.pods),
      each: runs,
      load_average: loadAverage(),
      link_time_ms: round(((o.pods * o.mib * 2 ** 20 * 8) / parseRate(o.rate)) * 1000, 0),
    };
  } finally {
    if (o.logs) {
      mkdirSync(o.logs, { recursive: true });
      for (const [i, h] of lan.hosts.entries()) {
        const name = "abc"[i]!;
        if (existsSync(join(h.dir, "agent.log"))) copyFileSync(join(h.dir, "agent.log"), join(o.logs, `${name}.log`));
        if (existsSync(join(h.stateDir, "update/events.jsonl"))) copyFileSync(join(h.stateDir, "update/events.jsonl"), join(o.logs, `${name}-events.jsonl`));
      }
      for (const d of dirs)
        if (existsSync(join(d, "agent-after-reboot.log"))) copyFileSync(join(d, "agent-after-reboot.log"), join(o.logs, "a-after-reboot.log"));
    }
    await stopAnyAgent(a);
    await a.startAgent().catch(() => {}); // dispose removes the pods through an agent it owns
    await lan.dispose();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

export function parseRate(r: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(r);
  if (!m) throw new Error(`RATE ${r}: expected like 1gbit or 400mbit`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9, "": 1 }[(m[2] ?? "").toLowerCase() as "k" | "m" | "g" | ""];
}
