/**
 * StatusService: the agent's copy of the status report. It keeps the latest
 * report, refreshes it every refresh interval and a few seconds after a
 * watched file changes (package database, apt lists, reboot sentinels,
 * /boot), and hands out the cached report at once.
 *
 * - One collection at a time. A request that arrives while one runs is served
 *   by the next collection, started when the running one ends; any number of
 *   requests share that one.
 * - start() never waits: the first collection runs in the background.
 * - A collection that throws keeps the last good report and records the error.
 * - Changes are debounced: a burst of events (an apt-get upgrade writes the
 *   database many times) gives one refresh, debounceMs after the last event,
 *   or maxDebounceMs after the first when events keep coming.
 *
 * The collector, clock and change source are injectable for tests.
 */
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { escapeLabel } from "./prometheus.ts";
import type { StatusReport } from "./report.ts";
import { PathWatcher } from "./watch.ts";

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Timers of the status service never keep a process alive on their own.
    (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Where change notices come from (a PathWatcher, or a fake). */
export interface ChangeSource {
  /** (Re)establish watches; called at start and every rearmMs. */
  arm(): void;
  close(): void;
  /** What is being watched, for the API. */
  readonly watching: string[];
}

export const REFRESH_REASONS = ["startup", "schedule", "change", "request"] as const;
export type RefreshReason = (typeof REFRESH_REASONS)[number];

export interface StatusServiceOptions {
  /** Build a fresh report (collectStatus with the agent's options). */
  /** One collection; `signal` aborts when the service stops (kill what it runs: nobody waits for its result). */
  collect: (signal: AbortSignal) => Promise<StatusReport>;
  /** Refresh this long after the last collection ended. */
  refreshSeconds: number;
  /** Files whose change means the status may have changed (statusWatchPaths). */
  watchPaths?: readonly string[];
  /** Instead of a PathWatcher over watchPaths (tests). */
  changes?: (onChange: (path: string) => void) => ChangeSource;
  debounceMs?: number;
  maxDebounceMs?: number;
  /** How often to look again for watched directories that were missing or replaced. */
  rearmMs?: number;
  clock?: Clock;
  log?: Logger;
  /** Called with each new report (the update cycle looks at once, not at its next check_seconds). */
  onReport?: (report: StatusReport) => void;
}

export const DEFAULT_DEBOUNCE_MS = 3_000;
export const DEFAULT_MAX_DEBOUNCE_MS = 30_000;
export const DEFAULT_REARM_MS = 60_000; // an idle agent: no timer more often than once a minute

/** What GET /v1/status answers. */
export interface StatusSnapshot {
  /** The latest good report; null until the first collection has ended. */
  report: StatusReport | null;
  /** When the report's checks ran (its own checked_at). */
  checked_at: string | null;
  /** A collection is running now. */
  refreshing: boolean;
  refresh_seconds: number;
  /** When the next scheduled refresh starts; null while one runs. */
  next_refresh_at: string | null;
  /** The last collection failed: the report above is older. Cleared by the next good one. */
  last_error: { message: string; at: string } | null;
  /** Collections that ended, by why they ran; and how many of them failed. */
  collections: Record<RefreshReason, number> & { failed: number };
  /** Directories watched for changes. */
  watching: string[];
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class StatusService {
  readonly #opts: StatusServiceOptions;
  readonly #clock: Clock;
  readonly #changes: ChangeSource;
  #report: StatusReport | null = null;
  #lastError: { message: string; at: string } | null = null;
  #running: RefreshReason | null = null;
  /** Waiters for the collection after the running one, and why it runs. */
  #next: { reason: RefreshReason; waiters: Waiter[] } | null = null;
  #scheduleTimer: unknown = null;
  #nextRefreshAt: number | null = null;
  #debounceTimer: unknown = null;
  #firstChangeAt: number | null = null;
  /** What changed since the last change refresh was asked for (the first few), for the log. */
  #changedPaths = new Set<string>();
  #rearmTimer: unknown = null;
  /** Aborts the running collection's commands on stop. */
  #cancel: AbortController | null = null;
  #counts: Record<RefreshReason, number> & { failed: number } = { startup: 0, schedule: 0, change: 0, request: 0, failed: 0 };
  #started = false;
  #stopped = false;

  constructor(opts: StatusServiceOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    const onChange = (path: string) => this.#changed(path);
    this.#changes = opts.changes ? opts.changes(onChange) : new PathWatcher(opts.watchPaths ?? [], onChange, { log: opts.log });
  }

  /** Watch, and start the first collection in the background. Returns at once. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#arm();
    this.#clock.setTimeout(() => void this.#request("startup").catch(() => {}), 0);
  }

  /** The cached report and the service's state. Never waits. */
  snapshot(): StatusSnapshot {
    return {
      report: this.#report,
      checked_at: this.#report?.checked_at ?? null,
      refreshing: this.#running !== null,
      refresh_seconds: this.#opts.refreshSeconds,
      next_refresh_at: this.#nextRefreshAt === null ? null : new Date(this.#nextRefreshAt).toISOString(),
      last_error: this.#lastError,
      collections: { ...this.#counts },
      watching: this.#changes.watching,
    };
  }

  /**
   * Collect afresh and wait for it: a collection that starts after this call
   * (one already running may have missed a change made just before). Rejects
   * when that collection fails.
   */
  async refresh(): Promise<StatusSnapshot> {
    await this.#request("request");
    return this.snapshot();
  }

  /** Stop watching and scheduling. A running collection's commands are killed; its result is dropped. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancel?.abort();
    for (const t of [this.#scheduleTimer, this.#debounceTimer, this.#rearmTimer]) if (t !== null) this.#clock.clearTimeout(t);
    this.#scheduleTimer = this.#debounceTimer = this.#rearmTimer = null;
    this.#nextRefreshAt = null;
    this.#changes.close();
    const next = this.#next;
    this.#next = null;
    for (const w of next?.waiters ?? []) w.reject(new Error("The agent is stopping"));
  }

  #request(reason: RefreshReason): Promise<void> {
    if (this.#stopped) return Promise.reject(new Error("The agent is stopping"));
    return new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      if (this.#running === null) {
        this.#run(reason, [waiter]);
        return;
      }
      // Requests by people outrank changes, and changes the schedule, in the counts.
      if (!this.#next) this.#next = { reason, waiters: [] };
      else if (REFRESH_REASONS.indexOf(reason) > REFRESH_REASONS.indexOf(this.#next.reason)) this.#next.reason = reason;
      this.#next.waiters.push(waiter);
    });
  }

  #run(reason: RefreshReason, waiters: Waiter[]): void {
    this.#running = reason;
    if (this.#scheduleTimer !== null) this.#clock.clearTimeout(this.#scheduleTimer);
    this.#scheduleTimer = null;
    this.#nextRefreshAt = null;
    const started = this.#clock.now();
    this.#opts.log?.debug("status refresh started", { reason });
    let collection: Promise<StatusReport>;
    this.#cancel = new AbortController();
    try {
      collection = this.#opts.collect(this.#cancel.signal);
    } catch (e) {
      collection = Promise.reject(e);
    }
    collection.then(
      (report) => this.#ended(reason, waiters, started, report, null),
      (e: unknown) => this.#ended(reason, waiters, started, null, e ?? new Error("the collection failed")),
    );
  }

  #ended(reason: RefreshReason, waiters: Waiter[], started: number, report: StatusReport | null, error: unknown): void {
    this.#running = null;
    this.#cancel = null;
    this.#counts[reason]++;
    if (this.#stopped) {
      for (const w of waiters) w.reject(new Error("The agent is stopping"));
      return;
    }
    if (report) {
      this.#report = report;
      this.#lastError = null;
      this.#opts.log?.info("status refreshed", { reason, verdict: report.verdict, ms: this.#clock.now() - started });
      for (const w of waiters) w.resolve();
      try {
        this.#opts.onReport?.(report);
      } catch (e) {
        this.#opts.log?.error("a status report listener failed", { error: errorMessage(e) });
      }
    } else {
      this.#counts.failed++;
      this.#lastError = { message: errorMessage(error), at: new Date(this.#clock.now()).toISOString() };
      this.#opts.log?.error("status refresh failed; keeping the last report", { reason, error: errorMessage(error) });
      for (const w of waiters) w.reject(error);
    }
    if (this.#next) {
      const next = this.#next;
      this.#next = null;
      this.#run(next.reason, next.waiters);
      return;
    }
    const delay = this.#opts.refreshSeconds * 1000;
    this.#nextRefreshAt = this.#clock.now() + delay;
    this.#scheduleTimer = this.#clock.setTimeout(() => {
      this.#scheduleTimer = null;
      void this.#request("schedule").catch(() => {});
    }, delay);
  }

  #changed(path: string): void {
    if (this.#stopped || !this.#started) return;
    const now = this.#clock.now();
    this.#opts.log?.debug("status watch: change", { path });
    if (this.#changedPaths.size < 8) this.#changedPaths.add(path);
    this.#firstChangeAt ??= now;
    if (this.#debounceTimer !== null) this.#clock.clearTimeout(this.#debounceTimer);
    const debounce = this.#opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    const latest = this.#firstChangeAt + (this.#opts.maxDebounceMs ?? DEFAULT_MAX_DEBOUNCE_MS);
    this.#debounceTimer = this.#clock.setTimeout(
      () => {
        this.#debounceTimer = null;
        this.#firstChangeAt = null;
        this.#opts.log?.info("status: watched files changed; refreshing", { paths: [...this.#changedPaths] });
        this.#changedPaths.clear();
        void this.#request("change").catch(() => {});
      },
      Math.max(0, Math.min(debounce, latest - now)),
    );
  }

  #arm(): void {
    if (this.#stopped) return;
    try {
      this.#changes.arm();
    } catch (e) {
      this.#opts.log?.warn("status watch could not be set up; will retry", { error: errorMessage(e) });
    }
    this.#rearmTimer = this.#clock.setTimeout(() => this.#arm(), this.#opts.rearmMs ?? DEFAULT_REARM_MS);
  }
}

/** The service's own state as Prometheus gauges, to follow the report's metrics. */
export function formatServiceMetrics(s: StatusSnapshot): string {
  const lines = [
    "# HELP autopod_status_refreshing 1 while the agent is collecting a fresh report.",
    "# TYPE autopod_status_refreshing gauge",
    `autopod_status_refreshing ${s.refreshing ? 1 : 0}`,
    "# HELP autopod_status_refresh_failed 1 when the agent's last collection failed: the report is older than its last attempt.",
    "# TYPE autopod_status_refresh_failed gauge",
    `autopod_status_refresh_failed ${s.last_error ? 1 : 0}`,
    "# HELP autopod_status_collections_total Collections the agent has run, by why they ran.",
    "# TYPE autopod_status_collections_total counter",
    ...REFRESH_REASONS.map((r) => `autopod_status_collections_total{reason="${escapeLabel(r)}"} ${s.collections[r]}`),
  ];
  return lines.join("\n") + "\n";
}
