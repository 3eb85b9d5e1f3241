/**
 * Notices pods that end, and reaps what CRIU leaves behind, without a timer
 * while nothing happens: an ExitWatch (pidfds and a sleeping thread) wakes it
 * when a pod's process exits. Sweeps for orphans (see pods/orphan-reaper.ts)
 * run every SWEEP_MS only for a while after a pod changes state (a failed
 * restore leaves its orphans then) and while zombies wait; once a minute
 * otherwise, in case something was missed.
 */
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { ExitWatch } from "../platform/linux/exit-watch.ts";
import { hasProcesses } from "../pods/lifecycle.ts";
import type { OrphanReaper } from "../pods/orphan-reaper.ts";
import type { PodRecord } from "../pods/pod.ts";

/** The sweep period while something happens (two sweeps take an orphan). */
const SWEEP_MS = 250;
/** How long sweeps go on after a pod changed state. */
const BUSY_AFTER_CHANGE_MS = 5_000;
/** The one timer of an idle agent. */
const IDLE_CHECK_MS = 60_000;

export interface PodWatchDeps {
  /** Reap or notice every pod that ended (PodRuntime.poll). */
  poll(): void;
  list(): PodRecord[];
  orphans: Pick<OrphanReaper, "sweep">;
  /** Zombie children of the agent, reaped or not by someone yet. */
  zombieChildren(): number[];
  log: Logger;
  /** Tests: the sweep period and the busy time after a change (default SWEEP_MS, BUSY_AFTER_CHANGE_MS). */
  sweepMs?: number;
  busyMs?: number;
}

export class PodWatch {
  #exits: ExitWatch | null = null;
  #idle: ReturnType<typeof setInterval> | null = null;
  #soon: ReturnType<typeof setTimeout> | null = null;
  #busyUntil = 0;
  #lastTick = 0;
  /** How many checks ran, for tests and benches. */
  ticks = 0;

  constructor(private readonly d: PodWatchDeps) {}

  get #sweepMs(): number {
    return this.d.sweepMs ?? SWEEP_MS;
  }

  start(): void {
    this.#exits = new ExitWatch(() => this.#onExit());
    this.#idle = setInterval(() => this.#tick(), IDLE_CHECK_MS);
    this.#idle.unref();
    this.changed();
  }

  /** A pod changed state: follow its pid, and sweep for a while. */
  changed(): void {
    if (!this.#exits) return;
    this.#follow();
    this.#busyUntil = performance.now() + (this.d.busyMs ?? BUSY_AFTER_CHANGE_MS);
    this.#later(this.#sweepMs);
  }

  stop(): void {
    if (this.#idle) clearInterval(this.#idle);
    if (this.#soon) clearTimeout(this.#soon);
    this.#idle = this.#soon = null;
    this.#exits?.close();
    this.#exits = null;
  }

  #onExit(): void {
    const previous = this.#lastTick;
    this.#tick();
    // A pidfd that stays readable (a pod the runtime cannot reap yet) must not spin: at most one wake-up per SWEEP_MS.
    const wait = Math.max(0, previous + this.#sweepMs - performance.now());
    if (wait === 0) this.#exits?.rearm();
    else setTimeout(() => this.#exits?.rearm(), wait);
  }

  #later(ms: number): void {
    if (this.#soon || !this.#exits) return;
    this.#soon = setTimeout(() => {
      this.#soon = null;
      this.#tick();
    }, ms);
  }

  #tick(): void {
    if (!this.#exits) return;
    this.ticks++;
    this.#lastTick = performance.now();
    try {
      this.d.poll();
      const gone = this.d.orphans.sweep();
      if (gone.length > 0) this.d.log.info("reaped orphaned processes (left by a failed CRIU restore)", { pids: gone.join(",") });
      this.#follow();
      if (performance.now() < this.#busyUntil || this.d.zombieChildren().length > 0) this.#later(this.#sweepMs);
    } catch (e) {
      this.d.log.error("reaper failed", { error: errorMessage(e) });
    }
  }

  /** Watch the pid 1 of every pod the runtime checks (not one being created: nothing reaps it yet). */
  #follow(): void {
    const pids: number[] = [];
    for (const r of this.d.list()) if (r.pid !== null && hasProcesses(r.state) && r.state !== "creating") pids.push(r.pid);
    this.#exits?.watch(pids);
  }
}
