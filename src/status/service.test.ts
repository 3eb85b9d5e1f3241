/**
 * StatusService with a fake collector, clock and change source: the first
 * collection in the background, the schedule, debounced changes, one
 * collection at a time, and failures that keep the last good report.
 */
import { describe, expect, test } from "bun:test";
import { buildReport, type StatusReport } from "./report.ts";
import { type ChangeSource, type Clock, formatServiceMetrics, StatusService, type StatusServiceOptions } from "./service.ts";

const flush = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

class FakeClock implements Clock {
  t = 1_700_000_000_000;
  #id = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Move time on, running timers as they fall due (and the promises they settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await flush();
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
    await flush();
  }
}

class FakeChanges implements ChangeSource {
  armed = 0;
  closed = false;
  watching = ["/fake/var/lib/dpkg"];
  onChange!: (path: string) => void;
  arm(): void {
    this.armed++;
  }
  close(): void {
    this.closed = true;
  }
  fire(path = "/fake/var/lib/dpkg/status"): void {
    this.onChange(path);
  }
}

/** A collector whose collections end when the test says, counting how many run at once. */
class FakeCollector {
  calls = 0;
  running = 0;
  maxRunning = 0;
  #pending: Array<{ resolve: (r: StatusReport) => void; reject: (e: unknown) => void; n: number }> = [];
  signals: AbortSignal[] = [];
  collect = (signal: AbortSignal): Promise<StatusReport> => {
    this.signals.push(signal);
    const n = ++this.calls;
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise<StatusReport>((resolve, reject) => this.#pending.push({ resolve, reject, n })).finally(() => this.running--);
  };
  /** End the oldest running collection with a report (numbered by call) or an error. */
  async finish(error?: Error): Promise<void> {
    const p = this.#pending.shift();
    if (!p) throw new Error("no collection is running");
    if (error) p.reject(error);
    else p.resolve(report(p.n));
    await flush();
  }
}

/** A report whose host names the collection that made it. */
function report(n: number): StatusReport {
  return buildReport(`collection-${n}`, new Date(1_700_000_000_000 + n * 1000), 5, []);
}

function setUp(opts: Partial<StatusServiceOptions> = {}) {
  const clock = new FakeClock();
  const changes = new FakeChanges();
  const collector = new FakeCollector();
  const service = new StatusService({
    collect: collector.collect,
    refreshSeconds: 60,
    debounceMs: 3_000,
    maxDebounceMs: 30_000,
    rearmMs: 30_000,
    clock,
    changes: (onChange) => {
      changes.onChange = onChange;
      return changes;
    },
    ...opts,
  });
  return { clock, changes, collector, service };
}

describe("StatusService", () => {
  test("stop aborts the running collection, so what it runs is killed and the agent stops at once", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    expect(collector.signals.length).toBe(1);
    expect(collector.signals[0]!.aborted).toBe(false);
    service.stop();
    expect(collector.signals[0]!.aborted).toBe(true);
    await collector.finish(new Error("killed"));
    expect(service.snapshot().report).toBeNull();
  });

  test("start returns at once; the first collection runs in the background", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    expect(collector.calls).toBe(0);
    expect(service.snapshot()).toMatchObject({ report: null, checked_at: null, refreshing: false });
    await clock.advance(0);
    expect(collector.calls).toBe(1);
    expect(service.snapshot()).toMatchObject({ report: null, refreshing: true, next_refresh_at: null });
    await collector.finish();
    const s = service.snapshot();
    expect(s.report?.host).toBe("collection-1");
    expect(s.checked_at).toBe(s.report!.checked_at);
    expect(s.refreshing).toBe(false);
    expect(s.next_refresh_at).toBe(new Date(clock.t + 60_000).toISOString());
    expect(s.collections).toEqual({ startup: 1, schedule: 0, change: 0, request: 0, failed: 0 });
    expect(s.watching).toEqual(["/fake/var/lib/dpkg"]);
    service.stop();
  });

  test("refreshes on schedule, refreshSeconds after the last collection ended", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await clock.advance(10_000); // the first collection takes 10 s
    await collector.finish();
    await clock.advance(59_999);
    expect(collector.calls).toBe(1);
    await clock.advance(1);
    expect(collector.calls).toBe(2);
    await collector.finish();
    await clock.advance(60_000);
    expect(collector.calls).toBe(3);
    await collector.finish();
    expect(service.snapshot().report?.host).toBe("collection-3");
    expect(service.snapshot().collections).toMatchObject({ startup: 1, schedule: 2 });
    service.stop();
  });

  test("a change refreshes after the debounce; a burst of changes gives one refresh", async () => {
    const { clock, changes, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish();
    changes.fire();
    await clock.advance(2_999);
    expect(collector.calls).toBe(1);
    await clock.advance(1);
    expect(collector.calls).toBe(2);
    await collector.finish();

    // Ten events a second apart: one refresh, 3 s after the last.
    for (let i = 0; i < 10; i++) {
      changes.fire();
      await clock.advance(1_000);
    }
    expect(collector.calls).toBe(2);
    await clock.advance(2_000);
    expect(collector.calls).toBe(3);
    await collector.finish();
    expect(service.snapshot().collections).toMatchObject({ startup: 1, change: 2, schedule: 0 });
    service.stop();
  });

  test("changes that never stop still refresh within maxDebounceMs", async () => {
    const { clock, changes, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish();
    for (let i = 0; i < 29; i++) {
      changes.fire();
      await clock.advance(1_000);
    }
    expect(collector.calls).toBe(1);
    changes.fire();
    await clock.advance(1_000);
    expect(collector.calls).toBe(2);
    service.stop();
  });

  test("a change moves the schedule: the next scheduled refresh counts from the last collection", async () => {
    const { clock, changes, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish(); // t0: next scheduled at t0 + 60 s
    await clock.advance(50_000);
    changes.fire();
    await clock.advance(3_000); // t0 + 53 s: change refresh
    expect(collector.calls).toBe(2);
    await collector.finish();
    await clock.advance(59_999);
    expect(collector.calls).toBe(2);
    await clock.advance(1);
    expect(collector.calls).toBe(3);
    service.stop();
  });

  test("never two collections at once: requests and changes during one share the next", async () => {
    const { clock, changes, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    expect(collector.calls).toBe(1);
    const refreshes = [service.refresh(), service.refresh(), service.refresh()];
    changes.fire();
    await clock.advance(3_000); // the change's debounce ends while the first still runs
    expect(collector.calls).toBe(1);
    expect(collector.maxRunning).toBe(1);
    let settled = 0;
    for (const r of refreshes) void r.then(() => settled++);
    await collector.finish(); // the startup collection: the requests wait for one that starts after them
    expect(settled).toBe(0);
    expect(collector.calls).toBe(2);
    expect(service.snapshot().refreshing).toBe(true);
    await collector.finish();
    expect(settled).toBe(3);
    const snaps = await Promise.all(refreshes);
    for (const s of snaps) expect(s.report?.host).toBe("collection-2");
    expect(collector.maxRunning).toBe(1);
    expect(collector.calls).toBe(2);
    expect(service.snapshot().collections).toMatchObject({ startup: 1, request: 1, change: 0 });
    // Nothing left queued: the next collection is the scheduled one.
    await clock.advance(59_000);
    expect(collector.calls).toBe(2);
    service.stop();
  });

  test("refresh() when idle collects at once and waits for it", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish();
    const r = service.refresh();
    expect(collector.calls).toBe(2);
    await collector.finish();
    expect((await r).report?.host).toBe("collection-2");
    service.stop();
  });

  test("a failed collection keeps the last good report and records the error; the next good one clears it", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish();
    const failing = service.refresh();
    const rejected = failing.then(
      () => null,
      (e: Error) => e.message,
    );
    await collector.finish(new Error("apt-get exploded"));
    expect(await rejected).toBe("apt-get exploded");
    let s = service.snapshot();
    expect(s.report?.host).toBe("collection-1");
    expect(s.last_error).toEqual({ message: "apt-get exploded", at: new Date(clock.t).toISOString() });
    expect(s.collections).toMatchObject({ startup: 1, request: 1, failed: 1 });
    expect(s.refreshing).toBe(false);
    expect(formatServiceMetrics(s)).toContain("autopod_status_refresh_failed 1");
    // The schedule goes on after a failure.
    await clock.advance(60_000);
    expect(collector.calls).toBe(3);
    await collector.finish();
    s = service.snapshot();
    expect(s.report?.host).toBe("collection-3");
    expect(s.last_error).toBeNull();
    expect(formatServiceMetrics(s)).toContain("autopod_status_refresh_failed 0");
    service.stop();
  });

  test("a failed first collection leaves no report, an error, and a schedule", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    await collector.finish(new Error("no /proc"));
    const s = service.snapshot();
    expect(s.report).toBeNull();
    expect(s.last_error?.message).toBe("no /proc");
    expect(s.next_refresh_at).not.toBeNull();
    await clock.advance(60_000);
    expect(collector.calls).toBe(2);
    service.stop();
  });

  test("onReport hears each new report (startup, change, request), not a failed collection; a listener that throws changes nothing", async () => {
    const heard: string[] = [];
    const { clock, changes, collector, service } = setUp({
      onReport: (r) => {
        heard.push(r.host);
        throw new Error("listener broke");
      },
    });
    service.start();
    await clock.advance(0);
    await collector.finish();
    changes.fire();
    await clock.advance(3_000);
    await collector.finish();
    const failing = service.refresh().catch(() => null);
    await collector.finish(new Error("apt-get exploded"));
    await failing;
    const r = service.refresh();
    await collector.finish();
    expect((await r).report?.host).toBe("collection-4");
    expect(heard).toEqual(["collection-1", "collection-2", "collection-4"]);
    expect(service.snapshot().collections).toMatchObject({ startup: 1, change: 1, request: 2, failed: 1 });
    service.stop();
  });

  test("a collector that throws at once is a failed collection too", async () => {
    const clock = new FakeClock();
    const service = new StatusService({
      collect: () => {
        throw new Error("sync boom");
      },
      refreshSeconds: 60,
      clock,
      changes: () => new FakeChanges(),
    });
    service.start();
    await clock.advance(0);
    expect(service.snapshot()).toMatchObject({ report: null, refreshing: false, last_error: { message: "sync boom" } });
    await expect(service.refresh()).rejects.toThrow("sync boom");
    service.stop();
  });

  test("watches are set up at start and looked at again every rearmMs", async () => {
    const { clock, changes, service } = setUp();
    expect(changes.armed).toBe(0);
    service.start();
    expect(changes.armed).toBe(1);
    await clock.advance(90_000);
    expect(changes.armed).toBe(4);
    service.stop();
    expect(changes.closed).toBe(true);
    await clock.advance(90_000);
    expect(changes.armed).toBe(4);
  });

  test("stop: no more timers, queued requests fail, a running collection's result is dropped", async () => {
    const { clock, changes, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    const queued = service.refresh().then(
      () => "resolved",
      (e: Error) => e.message,
    );
    service.stop();
    expect(await queued).toBe("The agent is stopping");
    await collector.finish();
    expect(service.snapshot().report).toBeNull();
    changes.fire();
    await clock.advance(120_000);
    expect(collector.calls).toBe(1);
    expect(clock.timers.size).toBe(0);
    await expect(service.refresh()).rejects.toThrow("stopping");
  });

  test("the service's metrics", async () => {
    const { clock, collector, service } = setUp();
    service.start();
    await clock.advance(0);
    expect(formatServiceMetrics(service.snapshot())).toContain("autopod_status_refreshing 1");
    await collector.finish();
    const text = formatServiceMetrics(service.snapshot());
    expect(text).toContain("autopod_status_refreshing 0");
    expect(text).toContain('autopod_status_collections_total{reason="startup"} 1');
    expect(text).toContain("# TYPE autopod_status_collections_total counter");
    service.stop();
  });
});
