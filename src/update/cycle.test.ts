/** The update cycle's state machine, with a fake evacuator, lock, status and commands. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StatusReport } from "../status/report.ts";
import { FakeEvacuator } from "./_fake-evacuator.ts";
import { type CommandResult, type CyclePolicy, UpdateCycle } from "./cycle.ts";
import { EventLog } from "./events.ts";
import { FleetLock } from "./fleetlock.ts";
import { FleetLockTestServer } from "./_fleetlock-test-server.ts";
import { CycleJournal } from "./journal.ts";
import { type AcquireOptions, LockAbortedError, type LockHandle, LockServiceError, type RebootLock, sleepOrAbort } from "./lock.ts";
import { UpdateMetrics } from "./metrics.ts";
import { UpdateWindows, type WindowSpec } from "./window.ts";

const root = mkdtempSync(join(tmpdir(), "autopod-cycle-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function report(o: { reboot?: boolean; security?: number; total?: number } = {}): StatusReport {
  const total = o.total ?? o.security ?? 0;
  return {
    schema_version: 1,
    host: "a",
    checked_at: new Date().toISOString(),
    duration_ms: 1,
    verdict: o.reboot ? "reboot_required" : (o.security ?? 0) > 0 ? "security_update_available" : total > 0 ? "update_available" : "ok",
    needs_update: total > 0,
    needs_reboot: o.reboot ?? false,
    complete: true,
    updates: { total, security: o.security ?? 0 },
    checks: [],
  };
}

class FakeLock implements RebootLock {
  readonly kind = "etcd" as const;
  readonly log: string[] = [];
  held = false;
  blockFor: string | null = null;
  failAcquire: string | null = null;
  /** Releases (either kind) that fail before one works. */
  failReleases = 0;
  async acquire(opts: AcquireOptions = {}): Promise<LockHandle> {
    this.log.push("acquire");
    if (this.failAcquire) throw new LockServiceError(this.failAcquire);
    while (this.blockFor) {
      opts.onWait?.(`held by ${this.blockFor}`);
      await sleepOrAbort(10, opts.signal);
    }
    this.held = true;
    return { kind: "etcd", key: "k", lease: "7" };
  }
  async resume(): Promise<boolean> {
    this.log.push("resume");
    return this.held;
  }
  async release(): Promise<void> {
    this.log.push("release");
    if (this.failReleases-- > 0) throw new LockServiceError("no lock service answered");
    this.held = false;
  }
  async releaseOwn(): Promise<void> {
    this.log.push("releaseOwn");
    if (this.failReleases-- > 0) throw new LockServiceError("no lock service answered");
    this.held = false;
  }
  close(): void {}
}

let n = 0;
function setup(
  o: { policy?: Partial<CyclePolicy>; windows?: WindowSpec[]; now?: number; status?: StatusReport; after?: StatusReport; lock?: RebootLock } = {},
) {
  const dir = join(root, `c${n++}`);
  const policy: CyclePolicy = {
    mode: "evacuate-update-reboot",
    trigger: ["security", "reboot-required"],
    updateCommand: ["/usr/bin/apt-get", "upgrade", "-y"],
    rebootCommand: ["systemctl", "reboot"],
    blockers: [],
    return: true,
    retrySeconds: 3600,
    commandTimeoutSeconds: 60,
    rebootTimeoutSeconds: 600,
    ...o.policy,
  };
  const t = { now: o.now ?? Date.parse("2026-11-30T10:00:00Z") };
  const status = { report: o.status ?? (report({ reboot: true }) as StatusReport | null), afterUpdate: o.after ?? report({ reboot: true }), refreshes: 0 };
  const ran: string[][] = [];
  const exits = new Map<string, number>();
  const run = async (argv: string[]): Promise<CommandResult> => {
    ran.push(argv);
    if (argv[0] === policy.updateCommand[0] && (exits.get(argv.join(" ")) ?? 0) === 0) status.report = status.afterUpdate;
    return { exitCode: exits.get(argv.join(" ")) ?? 0, output: `ran ${argv.join(" ")}`, timedOut: false };
  };
  const evacuator = new FakeEvacuator();
  const lock = new FakeLock();
  const journal = new CycleJournal(join(dir, "journal.json"));
  const events = new EventLog(join(dir, "events.jsonl"));
  const metrics = new UpdateMetrics(join(dir, "metrics.json"));
  const timers: (() => void)[] = [];
  let boot = "boot-1";
  const make = () =>
    new UpdateCycle({
      policy,
      windows: new UpdateWindows(o.windows ?? []),
      clock: { now: () => t.now },
      status: {
        current: () => status.report,
        refresh: async () => {
          status.refreshes++;
          if (!status.report) throw new Error("no report");
          return status.report;
        },
      },
      evacuator,
      lock: o.lock ?? lock,
      run,
      journal,
      events,
      metrics,
      bootId: () => boot,
      setTimer: (fn) => timers.push(fn),
      clearTimer: () => {},
    });
  return {
    cycle: make(),
    /** The agent after a restart: same disk, a new cycle object. */
    restart: (newBoot: boolean) => {
      if (newBoot) boot = "boot-2";
      return make();
    },
    t,
    status,
    ran,
    exits,
    evacuator,
    lock,
    journal,
    events,
    metrics,
    timers,
    kinds: () => events.list().map((e) => e.kind),
  };
}

describe("UpdateCycle", () => {
  test("the whole cycle: lock, evacuate, update, re-check, reboot; after the reboot: re-check, release, bring home", async () => {
    const s = setup();
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
    expect(s.evacuator.calls[0]!.req).toEqual({ suspendFallback: true });
    expect(s.ran).toEqual([
      ["/usr/bin/apt-get", "upgrade", "-y"],
      ["systemctl", "reboot"],
    ]);
    expect(s.journal.read()!.phase).toBe("rebooting");
    expect(s.lock.log).toEqual(["acquire"]);
    expect(s.evacuator.declared).toEqual(["updating"]);
    expect(s.kinds()).toEqual([
      "cycle.started",
      "lock.waiting",
      "lock.taken",
      "evacuation.started",
      "evacuation.progress",
      "evacuation.done",
      "update.started",
      "update.done",
      "status.rechecked",
      "reboot.started",
    ]);
    // Another look while the reboot is under way does nothing.
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);

    // "Reboot": the sentinel is gone, a new agent starts on a new boot.
    s.status.report = report();
    s.cycle.stop();
    const after = s.restart(true);
    await after.resume();
    expect(s.journal.read()).toBeNull();
    expect(s.lock.log).toEqual(["acquire", "resume", "release"]);
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.evacuator.declared).toEqual(["updating", null]);
    const kinds = s.kinds();
    expect(kinds.slice(kinds.indexOf("cycle.resumed"))).toEqual([
      "cycle.resumed",
      "status.rechecked",
      "lock.released",
      "return.started",
      "evacuation.progress",
      "return.done",
      "cycle.finished",
    ]);
    const progress = s.events.list().find((e) => e.kind === "evacuation.progress")!;
    expect(progress.msg).toBe('Evacuation: pod "web" moving to peer-b');
    // The message once: not again as a field (`autopod events -f` printed each progress line twice over).
    expect(progress.fields).toEqual({ pod: "web" });
    const finished = s.events.list().at(-1)!;
    expect(Object.keys(finished.fields!.phases as object)).toEqual(["locking", "evacuating", "updating", "rebooting", "finishing"]);
    const m = s.metrics.format();
    expect(m).toContain('autopod_update_cycles_total{outcome="completed"} 1');
    expect(m).toContain("autopod_update_reboots_total 1");
    expect(m).toContain('autopod_evacuated_pods_total{outcome="migrated"} 1');
    expect(m).toContain('autopod_evacuation_pod_downtime_seconds{pod="web"} 0.12');
    expect(m).toContain('autopod_update_commands_total{result="ok"} 1');
    // Counters survive the reboot: they are on disk.
    expect(new UpdateMetrics(join(root, `c${n - 1}`, "metrics.json")).format()).toContain("autopod_update_reboots_total 1");
    // And nothing more happens: the host is patched.
    await after.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
  });

  test("mode off does nothing; notify says it once and moves nothing", async () => {
    const off = setup({ policy: { mode: "off" } });
    await off.cycle.tick();
    expect(off.kinds()).toEqual([]);
    const s = setup({ policy: { mode: "notify" } });
    await s.cycle.tick();
    await s.cycle.tick();
    expect(s.kinds()).toEqual(["update.needed"]);
    expect(s.evacuator.calls).toEqual([]);
    expect(s.lock.log).toEqual([]);
    expect(s.ran).toEqual([]);
  });

  test("nothing needed under the triggers: nothing moves", async () => {
    const s = setup({ policy: { trigger: ["security"] }, status: report({ reboot: true }) });
    await s.cycle.tick();
    expect(s.kinds()).toEqual(["update.not_needed"]);
    expect(s.lock.log).toEqual([]);
  });

  test("outside the window nothing happens; when it opens, the cycle runs", async () => {
    // Monday 2026-11-30 09:00 UTC; the window is Mondays 09:30 for an hour.
    const s = setup({ windows: [{ days: ["Mon"], start_time: "09:30", length_minutes: 60 }], now: Date.parse("2026-11-30T09:00:00Z") });
    await s.cycle.tick();
    await s.cycle.tick();
    expect(s.kinds()).toEqual(["window.closed"]);
    expect(s.events.list()[0]!.fields!.opens_at).toBe("2026-11-30T09:30:00.000Z");
    expect(s.lock.log).toEqual([]);
    expect(s.evacuator.calls).toEqual([]);
    s.t.now = Date.parse("2026-11-30T09:30:00Z");
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
    expect(s.journal.read()!.phase).toBe("rebooting");
  });

  test("a window that closes while waiting for the lock: the wait ends, nothing moves", async () => {
    const s = setup({ windows: [{ days: ["Mon"], start_time: "09:30", length_minutes: 60 }], now: Date.parse("2026-11-30T10:29:00Z") });
    s.lock.blockFor = "host-b";
    const p = s.cycle.tick();
    await Bun.sleep(50);
    s.t.now = Date.parse("2026-11-30T10:31:00Z");
    await p;
    expect(s.kinds()).toContain("lock.gave_up");
    expect(s.evacuator.calls).toEqual([]);
    expect(s.journal.read()).toBeNull();
  }, 10_000);

  test("a blocker that exits non-zero holds the cycle before the lock", async () => {
    const s = setup({ policy: { blockers: [["/usr/local/bin/busy-check", "--db"]] } });
    s.exits.set("/usr/local/bin/busy-check --db", 1);
    await s.cycle.tick();
    expect(s.kinds()).toEqual(["blocker.holding"]);
    expect(s.lock.log).toEqual([]);
    s.exits.set("/usr/local/bin/busy-check --db", 0);
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
  });

  test("an unreachable lock service: a clear event, nothing evacuated, and a pause before the next try", async () => {
    const s = setup();
    s.lock.failAcquire = "No etcd endpoint answered /v3/lease/grant: http://10.0.0.1:2379: connection refused";
    await s.cycle.tick();
    const failed = s.events.list().find((e) => e.kind === "cycle.failed")!;
    expect(failed.msg).toMatch(/failed at the lock: No etcd endpoint answered .*; nothing moved/);
    expect(s.evacuator.calls).toEqual([]);
    s.lock.failAcquire = null;
    await s.cycle.tick();
    expect(s.lock.log).toEqual(["acquire"]); // backing off
    expect(s.kinds().at(-1)).toBe("cycle.backoff");
    s.t.now += 3601_000;
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
  });

  test("a pod that moved after a failed migration: the evacuation's event says so, and the cycle goes on", async () => {
    const s = setup();
    s.evacuator.pods = [{ pod: "web", outcome: "migrated", attempts: [{ to: "peer-c", reason: 'migration to "peer-c" failed: its agent died' }] }];
    await s.cycle.tick();
    const done = s.events.list().find((e) => e.kind === "evacuation.done")!;
    expect(done.msg).toBe("Evacuated in 1.5 s: 1 migrated, 0 suspended, 0 stayed; 1 after a failed migration (see each pod's attempts)");
    expect((done.fields!.pods as { attempts: unknown[] }[])[0]!.attempts).toHaveLength(1);
    expect(s.journal.read()!.phase).toBe("rebooting");
  });

  test("a pod that stayed: no update, no reboot; the others come home and the lock is released", async () => {
    const s = setup();
    s.evacuator.pods = [
      { pod: "web", outcome: "migrated" },
      { pod: "big", outcome: "stayed", reason: "no peer has 64 GiB free" },
    ];
    await s.cycle.tick();
    expect(s.ran).toEqual([]);
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.lock.log).toEqual(["acquire", "release"]);
    expect(s.journal.read()).toBeNull();
    expect(s.events.list().find((e) => e.kind === "cycle.failed")!.msg).toBe(
      'Update cycle failed at "evacuate": Not rebooting: pod "big" stayed (no peer has 64 GiB free)',
    );
    expect(s.metrics.format()).toContain('autopod_update_failures_total{step="evacuate"} 1');
  });

  test("an evacuation that fails: pods home, lock released, no update", async () => {
    const s = setup();
    s.evacuator.failEvacuate = "peer-b refused the image";
    await s.cycle.tick();
    expect(s.ran).toEqual([]);
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.lock.log).toEqual(["acquire", "release"]);
  });

  test("an update command that fails: no reboot; pods home, lock released", async () => {
    const s = setup();
    s.exits.set("/usr/bin/apt-get upgrade -y", 100);
    await s.cycle.tick();
    expect(s.ran).toEqual([["/usr/bin/apt-get", "upgrade", "-y"]]);
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.lock.log).toEqual(["acquire", "release"]);
    expect(s.events.list().find((e) => e.kind === "cycle.failed")!.msg).toMatch(/failed at "update": The update command exited 100: ran/);
    expect(s.metrics.format()).toContain('autopod_update_commands_total{result="failed"} 1');
  });

  test("a reboot command that fails, and one that returns but never reboots: pods home, lock released", async () => {
    const s = setup();
    s.exits.set("systemctl reboot", 1);
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.lock.log).toEqual(["acquire", "release"]);
    const t = setup();
    await t.cycle.tick();
    expect(t.journal.read()!.phase).toBe("rebooting");
    expect(t.timers).toHaveLength(1);
    t.timers[0]!();
    for (let i = 0; i < 100 && t.journal.read(); i++) await Bun.sleep(10);
    expect(t.journal.read()).toBeNull();
    expect(t.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(t.events.list().find((e) => e.kind === "cycle.failed")!.msg).toMatch(/did not reboot within 600 s/);
  });

  test("no reboot needed after the update: the cycle ends at once, pods home", async () => {
    const s = setup({ status: report({ security: 2 }), after: report() });
    await s.cycle.tick();
    expect(s.ran).toEqual([["/usr/bin/apt-get", "upgrade", "-y"]]);
    expect(s.kinds()).toContain("reboot.not_needed");
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
    expect(s.journal.read()).toBeNull();
    expect(s.metrics.format()).toContain('autopod_update_cycles_total{outcome="completed"} 1');
  });

  test("an agent that died mid-update: the next one does not reboot; pods home, lock released", async () => {
    const s = setup();
    s.journal.write({
      version: 1,
      cycle: "c-1",
      phase: "updating",
      mode: "evacuate-update-reboot",
      reasons: ["reboot-required"],
      boot_id: "boot-1",
      started_at: new Date().toISOString(),
      lock: { kind: "etcd", key: "k", lease: "7" },
      evacuated: true,
      phase_started: { updating: Date.now() },
    });
    await s.restart(false).resume();
    expect(s.ran).toEqual([]);
    expect(s.evacuator.ops()).toEqual(["bringHome"]);
    expect(s.lock.log).toEqual(["release"]);
    expect(s.journal.read()).toBeNull();
    expect(s.events.list().find((e) => e.kind === "cycle.failed")!.msg).toMatch(/The agent stopped during "updating"/);
  });

  test("an agent that died while taking the lock: the next one gives back what it may hold, and moves nothing", async () => {
    const s = setup();
    s.journal.write({
      version: 1,
      cycle: "c-2",
      phase: "locking",
      mode: "evacuate-update-reboot",
      reasons: ["reboot-required"],
      boot_id: "boot-1",
      started_at: new Date().toISOString(),
      lock: null,
      evacuated: false,
      phase_started: { locking: Date.now() },
    });
    await s.restart(false).resume();
    expect(s.lock.log).toEqual(["releaseOwn"]);
    expect(s.evacuator.calls).toEqual([]);
    expect(s.ran).toEqual([]);
    expect(s.journal.read()).toBeNull();
  });

  test("a FleetLock slot held under this host's id with no journal (an agent killed mid-cycle, its journal lost) is released at start: steady-state, and an event says so", async () => {
    const server = new FleetLockTestServer(1);
    try {
      // The slot the killed agent held: no TTL, so without steady-state the group would wait for good.
      await new FleetLock({ endpoints: [server.url], id: "host-a", group: "default" }).acquire();
      expect(server.holders()).toEqual(["host-a"]);
      const s = setup({ status: report(), lock: new FleetLock({ endpoints: [server.url], id: "host-a", group: "default", pollMs: 20 }) });
      s.cycle.start(60_000);
      const deadline = Date.now() + 10_000;
      while (!s.kinds().includes("lock.steady") && Date.now() < deadline) await Bun.sleep(20);
      s.cycle.stop();
      expect(server.holders()).toEqual([]);
      expect(server.requests.filter((r) => r.path === "/v1/steady-state")).toEqual([{ path: "/v1/steady-state", id: "host-a", group: "default", status: 200 }]);
      expect(s.events.list().find((e) => e.kind === "lock.steady")!.msg).toBe(
        "This host is steady: told the fleet lock (fleetlock), so no slot stays held under its id",
      );
      // Another host of the group can take the slot now.
      await new FleetLock({ endpoints: [server.url], id: "host-b", group: "default" }).acquire();
      expect(server.holders()).toEqual(["host-b"]);
    } finally {
      server.stop();
    }
  });

  test("a journal that says the FleetLock slot was held: the restarted agent ends the cycle and releases it (an event says so); mode off or a held evacuation sends no steady-state", async () => {
    const server = new FleetLockTestServer(1);
    try {
      const lock = () => new FleetLock({ endpoints: [server.url], id: "host-a", group: "default", pollMs: 20 });
      await lock().acquire();
      const s = setup({ lock: lock() });
      s.journal.write({
        version: 1,
        cycle: "c-9",
        phase: "evacuating",
        mode: "evacuate-update-reboot",
        reasons: ["reboot-required"],
        boot_id: "boot-1",
        started_at: new Date().toISOString(),
        lock: { kind: "fleetlock", id: "host-a", group: "default" },
        evacuated: true,
        phase_started: { evacuating: Date.now() },
      });
      const again = s.restart(false);
      again.start(60_000);
      const deadline = Date.now() + 10_000;
      while (!s.kinds().includes("lock.released") && Date.now() < deadline) await Bun.sleep(20);
      again.stop();
      expect(server.holders()).toEqual([]);
      expect(s.evacuator.ops()[0]).toBe("bringHome");
      expect(s.journal.read()).toBeNull();

      // Mode off takes no lock, so it says nothing to the lock service.
      const off = setup({ policy: { mode: "off" }, lock: lock() });
      await off.cycle.steady();
      expect(server.requests.filter((r) => r.path === "/v1/steady-state").length).toBe(1);
      expect(off.kinds()).toEqual([]);
    } finally {
      server.stop();
    }
  });

  test("a release that fails (lock service down) is tried again at each look, before a new cycle takes the lock", async () => {
    const s = setup();
    s.lock.failReleases = 2;
    s.journal.write({
      version: 1,
      cycle: "c-3",
      phase: "updating",
      mode: "evacuate-update-reboot",
      reasons: ["reboot-required"],
      boot_id: "boot-1",
      started_at: new Date().toISOString(),
      lock: { kind: "etcd", key: "k", lease: "7" },
      evacuated: true,
      phase_started: { updating: Date.now() },
    });
    const c = s.restart(false);
    await c.resume();
    expect(s.events.list().find((e) => e.kind === "lock.release_failed")!.msg).toBe(
      "Cannot release the fleet lock: no lock service answered; it is released again before the next cycle",
    );
    // The host needs no action now: each look asks again, until the service answers.
    s.status.report = report();
    s.t.now += 3601_000; // past retry_seconds after the failed cycle
    await c.tick();
    expect(s.lock.log).toEqual(["release", "releaseOwn"]);
    await c.tick();
    expect(s.lock.log).toEqual(["release", "releaseOwn", "releaseOwn"]);
    expect(s.kinds()).toContain("lock.steady");
    await c.tick();
    expect(s.lock.log).toEqual(["release", "releaseOwn", "releaseOwn"]);
    // Needed again: the next cycle takes the lock as usual.
    s.status.report = report({ reboot: true });
    await c.tick();
    expect(s.lock.log.slice(3, 4)).toEqual(["acquire"]);
    expect(s.evacuator.ops()).toEqual(["bringHome", "evacuate"]);
  });

  test('mode "evacuate" stops after the evacuation and holds the lock until the host restarts', async () => {
    const s = setup({ policy: { mode: "evacuate" } });
    await s.cycle.tick();
    expect(s.ran).toEqual([]);
    expect(s.journal.read()!.phase).toBe("evacuated");
    await s.cycle.tick();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
    // The agent restarts without a reboot: still holding.
    await s.restart(false).resume();
    expect(s.journal.read()!.phase).toBe("evacuated");
    expect(s.lock.log).toEqual(["acquire", "resume"]);
    // After the admin's reboot: finish.
    s.status.report = report();
    await s.restart(true).resume();
    expect(s.journal.read()).toBeNull();
    expect(s.lock.log).toEqual(["acquire", "resume", "resume", "release"]);
    expect(s.evacuator.ops()).toEqual(["evacuate", "bringHome"]);
  });

  test("return = false leaves the pods where they are", async () => {
    const s = setup({ policy: { return: false } });
    await s.cycle.tick();
    s.status.report = report();
    await s.restart(true).resume();
    expect(s.evacuator.ops()).toEqual(["evacuate"]);
    expect(s.kinds()).toContain("return.skipped");
    expect(s.evacuator.forgot).toBe(1);
    expect(s.lock.log.at(-1)).toBe("release");
  });

  test("wake() looks at once; a wake that comes during a look (a report landing while it runs) is kept for right after it", async () => {
    const s = setup();
    const needed = report({ reboot: true });
    let reads = 0;
    // The first look finds no report, and a report lands while it runs (the status service wakes the cycle).
    Object.defineProperty(s.status, "report", {
      get: () => {
        if (reads++ > 0) return needed;
        s.cycle.wake();
        return null;
      },
      set: () => {},
    });
    s.cycle.start(3_600_000);
    const deadline = Date.now() + 5_000;
    while (!s.kinds().includes("reboot.started") && Date.now() < deadline) await Bun.sleep(10);
    s.cycle.stop();
    expect(s.kinds()).toContain("reboot.started");
    expect(s.evacuator.calls.length).toBe(1);

    // A cycle asleep between looks is woken by wake(), not by its hour-long interval.
    const t = setup({ status: report() });
    t.cycle.start(3_600_000);
    const idle = Date.now() + 5_000;
    while (!t.kinds().includes("update.not_needed") && Date.now() < idle) await Bun.sleep(10);
    await Bun.sleep(20);
    t.status.report = report({ reboot: true });
    t.cycle.wake();
    const woken = Date.now() + 5_000;
    while (!t.kinds().includes("reboot.started") && Date.now() < woken) await Bun.sleep(10);
    t.cycle.stop();
    expect(t.kinds()).toContain("reboot.started");
  });

  test("stop() ends a wait for the lock without moving anything", async () => {
    const s = setup();
    s.lock.blockFor = "host-b";
    const p = s.cycle.tick();
    await Bun.sleep(30);
    s.cycle.stop();
    await p;
    expect(s.evacuator.calls).toEqual([]);
    expect(s.journal.read()).toBeNull();
    expect(LockAbortedError).toBeDefined();
  });
});
