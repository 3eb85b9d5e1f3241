/**
 * The unscheduled-update cycle, a state machine journaled on disk because it
 * spans a reboot:
 *
 *   status says action is needed (per trigger) → inside a window → blockers
 *   clear → lock taken → evacuate (mode evacuate stops here) → update command
 *   → status re-checked → reboot command
 *
 * and, in the agent started after the reboot: re-check the status, release
 * the lock (steady-state), bring the pods home (return = true).
 *
 * A failure at any step is an event; the pods come home (when they left and
 * return = true), the lock is released, and the cycle waits retry_seconds
 * before it tries again. Nothing evacuates outside the rules (mode, trigger,
 * window, blockers, lock), and a reboot never happens while a pod stayed on
 * this host: evacuation never kills a pod, and neither does the cycle.
 */
import { randomUUID } from "node:crypto";
import { errorMessage } from "../errors.ts";
import type { StatusReport } from "../status/report.ts";
import type { WallClock } from "./clock.ts";
import type { EvacuationReport, Evacuator, EvacuatorEvent } from "./evacuator.ts";
import type { EventLevel, EventSink } from "./events.ts";
import type { CycleJournal, CyclePhase, Journal } from "./journal.ts";
import { LockAbortedError, type RebootLock } from "./lock.ts";
import type { UpdateMetrics } from "./metrics.ts";
import { type Trigger, triggersMet } from "./triggers.ts";
import type { UpdateWindows } from "./window.ts";

export type PolicyMode = "off" | "notify" | "evacuate" | "evacuate-update-reboot";

export interface CyclePolicy {
  mode: PolicyMode;
  trigger: Trigger[];
  updateCommand: string[];
  rebootCommand: string[];
  blockers: string[][];
  return: boolean;
  retrySeconds: number;
  commandTimeoutSeconds: number;
  rebootTimeoutSeconds: number;
}

export interface CommandResult {
  exitCode: number;
  /** The end of its output, for the event. */
  output: string;
  timedOut: boolean;
}

/** Runs a program from an argument array (no shell): the agent passes platform/linux's runner. */
export type CommandRunner = (argv: string[], timeoutMs: number) => Promise<CommandResult>;

export interface StatusSource {
  /** The latest report, or null before the first. */
  current(): StatusReport | null;
  /** Collect afresh and wait for it. */
  refresh(): Promise<StatusReport>;
}

export interface UpdateCycleOptions {
  policy: CyclePolicy;
  windows: UpdateWindows;
  clock: WallClock;
  status: StatusSource;
  evacuator: Evacuator;
  lock: RebootLock;
  run: CommandRunner;
  journal: CycleJournal;
  events: EventSink;
  metrics: UpdateMetrics;
  /** This boot's id (/proc/sys/kernel/random/boot_id): tells an agent restart from a reboot. */
  bootId: () => string;
  /** Timers for the reboot timeout (tests pass fakes). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

/** A step failed: the cycle ends, safely. */
class StepError extends Error {
  override name = "StepError";
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(message);
  }
}

export class UpdateCycle {
  readonly #o: UpdateCycleOptions;
  #busy = false;
  #retryAfter = 0;
  /** What was last said while idle, so a state is told once, not every tick. */
  #said = "";
  #rebootTimer: unknown = null;
  #stopped = false;
  #abortLock: AbortController | null = null;
  #wake: (() => void) | null = null;
  /** wake() came while no wait was under way: the next wait is skipped, so a new status report is never missed. */
  #wakeAsked = false;
  /** A release of the fleet lock failed: it is tried again (steady-state) at each look. */
  #owesRelease = false;

  constructor(o: UpdateCycleOptions) {
    this.#o = o;
  }

  /** The journal now (null when no cycle is under way). */
  get journal(): Journal | null {
    return this.#o.journal.read();
  }

  /** Take up a journaled cycle, then look every `everyMs` whether to run. Returns at once. */
  start(everyMs: number): void {
    const loop = async () => {
      const hadJournal = this.#hasJournal();
      await this.resume();
      // No cycle was under way, yet a slot may be held under this host's id (an agent killed while it held one, a journal
      // lost): a FleetLock slot has no TTL, so it would block the group for good. Zincati's way: steady-state at start.
      if (!hadJournal || this.#owesRelease) await this.steady();
      while (!this.#stopped) {
        await this.tick().catch((e) => this.#emit("error", "cycle.error", `The update cycle hit an error: ${errorMessage(e)}`));
        if (this.#wakeAsked) {
          this.#wakeAsked = false;
          continue;
        }
        await new Promise<void>((r) => {
          this.#wake = r;
          unrefTimeout(r, everyMs);
        });
        this.#wake = null;
      }
    };
    void loop();
  }

  /** Look again now rather than at the next interval (asked during a look: once more right after it). */
  wake(): void {
    if (this.#wake) this.#wake();
    else this.#wakeAsked = true;
  }

  /** Stop timers and any wait for the lock; a journaled cycle is taken up by the next agent. */
  stop(): void {
    this.#stopped = true;
    this.#abortLock?.abort();
    this.#wake?.();
    if (this.#rebootTimer !== null) (this.#o.clearTimer ?? clearTimeout)(this.#rebootTimer as ReturnType<typeof setTimeout>);
    this.#o.lock.close();
  }

  /**
   * At agent start: take up a journaled cycle (finish it after a reboot,
   * end it safely if the last agent died mid-step). Returns when done.
   */
  async resume(): Promise<void> {
    const j = this.#o.journal.read();
    if (!j) return;
    this.#busy = true;
    try {
      const rebooted = j.boot_id !== this.#o.bootId();
      this.#emit("info", "cycle.resumed", `Taking up update cycle ${j.cycle} at "${j.phase}"`, { phase: j.phase, rebooted }, j.cycle);
      switch (j.phase) {
        case "rebooting":
        case "finishing":
          if (!rebooted && j.phase === "rebooting")
            this.#emit("warn", "boot.same", "The boot id did not change: the reboot command restarted the agent but not the machine", {}, j.cycle);
          await this.#finish(j);
          return;
        case "evacuated":
          if (rebooted || this.#o.policy.mode !== "evacuate") {
            await this.#finish(j);
            return;
          }
          // mode evacuate, same boot: the host is still waiting for its admin; keep the lock alive.
          if (j.lock && !(await this.#o.lock.resume(j.lock))) this.#emit("warn", "lock.lost", "The fleet lock lapsed while the agent was down", {}, j.cycle);
          return;
        case "locking":
          // It may hold the lock (granted before the journal said so): give back what is ours, move nothing.
          await this.#o.lock.releaseOwn().then(
            () => this.#emit("info", "lock.released", "Released whatever this host held of the fleet lock", {}, j.cycle),
            (e) => this.#emit("error", "lock.release_failed", `Cannot release the fleet lock: ${errorMessage(e)}`, {}, j.cycle),
          );
          await this.#abort(j, "resume.locking", "The agent stopped while taking the lock; nothing had moved");
          return;
        default:
          await this.#abort(j, `resume.${j.phase}`, `The agent stopped during "${j.phase}"`);
      }
    } catch (e) {
      this.#emit("error", "cycle.resume_failed", `Cannot take up the update cycle: ${errorMessage(e)}`, {}, j.cycle);
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Tell the lock service this host is steady (FleetLock's steady-state; for etcd, our key deleted): whatever
   * slot it holds under its id is released. Only when no cycle is under way; a failure is retried at each look.
   */
  async steady(): Promise<void> {
    const { mode } = this.#o.policy;
    if ((mode !== "evacuate" && mode !== "evacuate-update-reboot") || this.#o.lock.kind === "none" || this.#hasJournal()) return;
    try {
      await this.#o.lock.releaseOwn();
    } catch (e) {
      this.#owesRelease = true;
      this.#sayOnce(
        `steady:${errorMessage(e)}`,
        "error",
        "lock.release_failed",
        `Cannot tell the fleet lock (${this.#o.lock.kind}) this host is steady: ${errorMessage(e)}; it is tried again at each look`,
      );
      return;
    }
    this.#owesRelease = false;
    this.#said = "";
    this.#emit("info", "lock.steady", `This host is steady: told the fleet lock (${this.#o.lock.kind}), so no slot stays held under its id`);
  }

  #hasJournal(): boolean {
    try {
      return this.#o.journal.read() !== null;
    } catch {
      return true; // a damaged journal: resume says so; the slot it may name stays until a person looks
    }
  }

  /** Look whether the cycle should run, and run it. One at a time; returns when this look (and any cycle) is over. */
  async tick(): Promise<void> {
    if (this.#busy || this.#stopped) return;
    this.#busy = true;
    try {
      await this.#tick();
    } finally {
      this.#busy = false;
    }
  }

  async #tick(): Promise<void> {
    const { policy } = this.#o;
    if (policy.mode === "off") return;
    if (this.#o.journal.read()) return; // a held evacuation (mode evacuate) or a reboot under way
    // A slot still owed back: ask again. A cycle may go on meanwhile: taking the lock under the same id is
    // taking that slot (FleetLock is recursive; etcd's key is this host's own), so nothing is held twice.
    if (this.#owesRelease) await this.steady();
    const report = this.#o.status.current();
    if (!report) return;
    const reasons = triggersMet(report, policy.trigger);
    if (reasons.length === 0) {
      this.#sayOnce("idle", "info", "update.not_needed", "The host needs no action under the policy's triggers", { verdict: report.verdict });
      return;
    }
    if (policy.mode === "notify") {
      this.#sayOnce(`notify:${reasons}`, "warn", "update.needed", `The host needs action (${reasons.join(", ")}); mode "notify" only tells`, { reasons });
      return;
    }
    const now = this.#o.clock.now();
    if (now < this.#retryAfter) {
      this.#sayOnce(`retry:${this.#retryAfter}`, "info", "cycle.backoff", "The last cycle failed: waiting before the next try", {
        retry_at: new Date(this.#retryAfter).toISOString(),
      });
      return;
    }
    const { windows } = this.#o;
    if (!windows.isOpen(now)) {
      const next = windows.nextOpen(now);
      this.#sayOnce(`window:${next}`, "info", "window.closed", `The host needs action (${reasons.join(", ")}); waiting for the update window`, {
        reasons,
        opens_at: next === null ? null : new Date(next).toISOString(),
      });
      return;
    }
    const blocker = await this.#blocked();
    if (blocker) {
      this.#sayOnce(
        `blocker:${blocker.argv.join(" ")}`,
        "warn",
        "blocker.holding",
        `A blocker holds the cycle back: ${blocker.argv.join(" ")} exited ${blocker.why}`,
        {
          blocker: blocker.argv,
        },
      );
      return;
    }
    this.#said = "";
    await this.#run(reasons);
  }

  async #blocked(): Promise<{ argv: string[]; why: string } | null> {
    for (const argv of this.#o.policy.blockers) {
      let r: CommandResult;
      try {
        r = await this.#o.run(argv, this.#o.policy.commandTimeoutSeconds * 1000);
      } catch (e) {
        return { argv, why: `(could not run: ${errorMessage(e)})` };
      }
      if (r.exitCode !== 0) return { argv, why: r.timedOut ? "(timed out)" : String(r.exitCode) };
    }
    return null;
  }

  /** From the lock to the reboot. */
  async #run(reasons: Trigger[]): Promise<void> {
    const { policy, windows, clock } = this.#o;
    const j: Journal = {
      version: 1,
      cycle: randomUUID(),
      phase: "locking",
      mode: policy.mode,
      reasons,
      boot_id: this.#o.bootId(),
      started_at: new Date().toISOString(),
      lock: null,
      evacuated: false,
      phase_started: {},
    };
    this.#enter(j, "locking");
    this.#emit("info", "cycle.started", `Update cycle started: ${reasons.join(", ")}`, { reasons, mode: policy.mode }, j.cycle);

    // The lock: wait for a slot while the window stays open.
    const waitStarted = Date.now();
    this.#abortLock = new AbortController();
    const windowWatch = setInterval(() => {
      if (!windows.isOpen(clock.now())) this.#abortLock?.abort();
    }, 1000);
    try {
      this.#emit(
        "info",
        "lock.waiting",
        this.#o.lock.kind === "none"
          ? 'No fleet lock (policy.lock.kind "none"): this host waits for no other host'
          : `Taking the fleet lock (${this.#o.lock.kind})`,
        {},
        j.cycle,
      );
      j.lock = await this.#o.lock.acquire({
        signal: this.#abortLock.signal,
        onWait: (why) => this.#emit("info", "lock.waiting", `Waiting for the fleet lock: ${why}`, {}, j.cycle),
      });
    } catch (e) {
      this.#o.journal.clear();
      this.#o.metrics.phase = "idle";
      if (e instanceof LockAbortedError) {
        const why = this.#stopped ? "the agent is stopping" : "the update window closed";
        this.#emit("info", "lock.gave_up", `Stopped waiting for the fleet lock: ${why}`, {}, j.cycle);
        if (!this.#stopped) this.#o.metrics.cycleEnded("window_closed");
        return;
      }
      this.#emit("error", "cycle.failed", `Update cycle failed at the lock: ${errorMessage(e)}; nothing moved`, { step: "lock" }, j.cycle);
      this.#o.metrics.failed("lock");
      this.#o.metrics.cycleEnded("failed");
      this.#retryAfter = clock.now() + policy.retrySeconds * 1000;
      return;
    } finally {
      clearInterval(windowWatch);
      this.#abortLock = null;
    }
    const waited = Date.now() - waitStarted;
    this.#o.metrics.lockWaited(waited);
    this.#o.journal.write(j);
    const taken = this.#o.lock.kind === "none" ? "Going on without a fleet lock" : `Took the fleet lock after ${(waited / 1000).toFixed(1)} s`;
    this.#emit("info", "lock.taken", taken, { waited_ms: waited }, j.cycle);

    try {
      // Still needed, by a fresh look (the lock may have taken long)?
      const fresh = await this.#refresh("status");
      if (triggersMet(fresh, policy.trigger).length === 0) {
        this.#emit("info", "update.not_needed", "A fresh status check finds nothing to do: ending the cycle", { verdict: fresh.verdict }, j.cycle);
        await this.#releaseLock(j);
        this.#o.journal.clear();
        this.#o.metrics.phase = "idle";
        this.#o.metrics.cycleEnded("not_needed");
        return;
      }

      // Evacuate.
      this.#enter(j, "evacuating");
      this.#emit("info", "evacuation.started", "Evacuating the pods", {}, j.cycle);
      let report: EvacuationReport;
      try {
        report = await this.#o.evacuator.evacuate({ suspendFallback: true }, (e) => this.#evacuatorEvent(e, j.cycle));
      } catch (e) {
        j.evacuated = true; // some may have moved before it failed
        throw new StepError("evacuate", `The evacuation failed: ${errorMessage(e)}`);
      }
      j.evacuated = true;
      this.#o.metrics.evacuated(report.pods);
      const count = (o: string) => report.pods.filter((p) => p.outcome === o).length;
      this.#emit(
        "info",
        "evacuation.done",
        `Evacuated in ${(report.wallMs / 1000).toFixed(1)} s: ${count("migrated")} migrated, ${count("suspended")} suspended, ${count("stayed")} stayed${retried(report.pods)}`,
        { pods: report.pods, wall_ms: report.wallMs },
        j.cycle,
      );
      const stayed = report.pods.filter((p) => p.outcome === "stayed");
      if (policy.mode === "evacuate") {
        this.#enter(j, "evacuated");
        this.#emit("info", "cycle.holding", 'Mode "evacuate": the pods are away; the lock is held until this host restarts', {}, j.cycle);
        return;
      }
      if (stayed.length)
        throw new StepError("evacuate", `Not rebooting: ${stayed.map((p) => `pod "${p.pod}" stayed (${p.reason ?? "no reason given"})`).join(", ")}`);

      // Update.
      this.#enter(j, "updating");
      this.#o.evacuator.declareMaintenance?.("updating");
      if (policy.updateCommand.length) {
        this.#emit("info", "update.started", `Running the update: ${policy.updateCommand.join(" ")}`, { argv: policy.updateCommand }, j.cycle);
        let r: CommandResult;
        try {
          r = await this.#o.run(policy.updateCommand, policy.commandTimeoutSeconds * 1000);
        } catch (e) {
          this.#o.metrics.updated(false);
          throw new StepError("update", `Cannot run the update command: ${errorMessage(e)}`);
        }
        this.#o.metrics.updated(r.exitCode === 0);
        if (r.exitCode !== 0)
          throw new StepError("update", `The update command ${r.timedOut ? "timed out" : `exited ${r.exitCode}`}: ${r.output.trim().slice(-500)}`);
        this.#emit("info", "update.done", "The update command succeeded", { output: r.output.trim().slice(-500) }, j.cycle);
      } else {
        this.#emit("info", "update.skipped", "No update command is set: going on to the reboot check", {}, j.cycle);
      }

      // Status re-checked: reboot only when it says so.
      const after = await this.#refresh("recheck");
      this.#emit(
        "info",
        "status.rechecked",
        `Status after the update: ${after.verdict}`,
        { verdict: after.verdict, needs_reboot: after.needs_reboot },
        j.cycle,
      );
      if (!after.needs_reboot) {
        this.#emit("info", "reboot.not_needed", "No reboot is needed after the update", {}, j.cycle);
        await this.#finish(j);
        return;
      }

      // Reboot.
      this.#enter(j, "rebooting");
      this.#emit("info", "reboot.started", `Rebooting: ${policy.rebootCommand.join(" ")}`, { argv: policy.rebootCommand }, j.cycle);
      this.#o.metrics.rebooted();
      let r: CommandResult;
      try {
        r = await this.#o.run(policy.rebootCommand, policy.commandTimeoutSeconds * 1000);
      } catch (e) {
        throw new StepError("reboot", `Cannot run the reboot command: ${errorMessage(e)}`);
      }
      if (r.exitCode !== 0) throw new StepError("reboot", `The reboot command exited ${r.exitCode}: ${r.output.trim().slice(-500)}`);
      // The machine goes down now (this agent is probably stopping already); if it does not, the cycle ends safely after the timeout.
      if (this.#stopped) return;
      this.#rebootTimer = (this.#o.setTimer ?? unrefTimeout)(() => {
        this.#rebootTimer = null;
        if (this.#stopped) return;
        void this.#exclusive(() =>
          this.#abort(j, "reboot", `The reboot command succeeded but this host did not reboot within ${policy.rebootTimeoutSeconds} s`),
        );
      }, policy.rebootTimeoutSeconds * 1000);
    } catch (e) {
      const step = e instanceof StepError ? e.step : j.phase;
      await this.#abort(j, step, errorMessage(e));
    }
  }

  /** After the reboot (or when none was needed): re-check, release, bring the pods home. */
  async #finish(j: Journal): Promise<void> {
    this.#enter(j, "finishing");
    try {
      const report = await this.#refresh("recheck");
      const still = triggersMet(report, this.#o.policy.trigger);
      this.#emit(still.length ? "warn" : "info", "status.rechecked", `Status after the cycle: ${report.verdict}`, { verdict: report.verdict, still }, j.cycle);
      if (still.length) this.#retryAfter = this.#o.clock.now() + this.#o.policy.retrySeconds * 1000;
    } catch (e) {
      this.#emit("warn", "status.recheck_failed", `Cannot re-check the status: ${errorMessage(e)}`, {}, j.cycle);
    }
    if (j.lock && !(await this.#o.lock.resume(j.lock).catch(() => false)))
      this.#emit("warn", "lock.lost", "The fleet lock lapsed before the cycle ended (its TTL is shorter than the reboot took?)", {}, j.cycle);
    const released = await this.#releaseLock(j);
    const returned = await this.#bringHome(j);
    this.#o.evacuator.declareMaintenance?.(null);
    this.#o.journal.clear();
    this.#o.metrics.phase = "idle";
    const ok = released && returned;
    this.#o.metrics.cycleEnded(ok ? "completed" : "failed");
    const started = Date.parse(j.started_at);
    this.#emit(
      ok ? "info" : "warn",
      "cycle.finished",
      `Update cycle finished${ok ? "" : " with problems (see above)"}`,
      {
        wall_ms: Date.now() - started,
        phases: phaseDurations(j, Date.now()),
      },
      j.cycle,
    );
  }

  /** End a cycle that failed at `step`: pods home when they left, the lock released, a pause before the next try. */
  async #abort(j: Journal, step: string, why: string): Promise<void> {
    this.#emit("error", "cycle.failed", `Update cycle failed at "${step}": ${why}`, { step }, j.cycle);
    this.#o.metrics.failed(step);
    await this.#bringHome(j);
    this.#o.evacuator.declareMaintenance?.(null);
    await this.#releaseLock(j);
    this.#o.journal.clear();
    this.#o.metrics.phase = "idle";
    this.#o.metrics.cycleEnded("failed");
    this.#retryAfter = this.#o.clock.now() + this.#o.policy.retrySeconds * 1000;
  }

  async #releaseLock(j: Journal): Promise<boolean> {
    if (!j.lock) return true;
    try {
      await this.#o.lock.release(j.lock);
      this.#emit("info", "lock.released", j.lock.kind === "none" ? "No fleet lock to release" : "Released the fleet lock", {}, j.cycle);
      j.lock = null;
      return true;
    } catch (e) {
      this.#owesRelease = true;
      this.#emit("error", "lock.release_failed", `Cannot release the fleet lock: ${errorMessage(e)}; it is released again before the next cycle`, {}, j.cycle);
      return false;
    }
  }

  async #bringHome(j: Journal): Promise<boolean> {
    if (!j.evacuated) return true;
    if (!this.#o.policy.return) {
      this.#o.evacuator.forget?.();
      this.#emit("info", "return.skipped", "return = false: the pods stay where they are", {}, j.cycle);
      return true;
    }
    this.#emit("info", "return.started", "Bringing the pods home", {}, j.cycle);
    try {
      const r = await this.#o.evacuator.bringHome((e) => this.#evacuatorEvent(e, j.cycle));
      this.#o.metrics.returned(r.pods);
      const failed = r.pods.filter((p) => p.outcome === "failed");
      this.#emit(
        failed.length ? "error" : "info",
        "return.done",
        `Brought ${r.pods.length - failed.length} of ${r.pods.length} pod(s) home`,
        {
          pods: r.pods,
          wall_ms: r.wallMs,
        },
        j.cycle,
      );
      return failed.length === 0;
    } catch (e) {
      this.#emit("error", "return.failed", `Cannot bring the pods home: ${errorMessage(e)}`, {}, j.cycle);
      return false;
    }
  }

  async #refresh(step: string): Promise<StatusReport> {
    try {
      return await this.#o.status.refresh();
    } catch (e) {
      throw new StepError(step, `The status check failed: ${errorMessage(e)}`);
    }
  }

  #enter(j: Journal, phase: CyclePhase): void {
    j.phase = phase;
    j.phase_started[phase] = Date.now();
    this.#o.journal.write(j);
    this.#o.metrics.phase = phase;
  }

  #evacuatorEvent(e: EvacuatorEvent, cycle: string): void {
    // Evacuation's own events carry a message and, for one pod, its name: they read best as they are, once
    // (not again as a field beside the message), and without the pod's name twice when the message names it.
    const o = (typeof e === "object" && e !== null ? e : {}) as { message?: unknown; pod?: unknown };
    if (typeof o.message === "string") {
      const pod = typeof o.pod === "string" ? o.pod : null;
      const named = pod === null || o.message.includes(`pod "${pod}"`) ? "" : `pod "${pod}" `;
      this.#emit("info", "evacuation.progress", `Evacuation: ${named}${o.message}`.slice(0, 1000), pod === null ? {} : { pod }, cycle);
      return;
    }
    let fields: Record<string, unknown>;
    try {
      const text = JSON.stringify(e) ?? "null";
      fields = text.length <= 4096 ? { event: JSON.parse(text) as unknown } : { event: `${text.slice(0, 4096)}…` };
    } catch {
      fields = { event: String(e) };
    }
    this.#emit("info", "evacuation.progress", "Evacuation progress", fields, cycle);
  }

  async #exclusive(fn: () => Promise<void>): Promise<void> {
    while (this.#busy) await Bun.sleep(50);
    this.#busy = true;
    try {
      await fn();
    } finally {
      this.#busy = false;
    }
  }

  #emit(level: EventLevel, kind: string, msg: string, fields: Record<string, unknown> = {}, cycle?: string): void {
    this.#o.events.emit(level, kind, msg, fields, cycle);
  }

  #sayOnce(key: string, level: EventLevel, kind: string, msg: string, fields: Record<string, unknown> = {}): void {
    if (this.#said === key) return;
    this.#said = key;
    this.#emit(level, kind, msg, fields);
  }
}

/** A timer that never keeps the process alive on its own: a stopped agent must be able to exit. */
function unrefTimeout(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
  const t = setTimeout(fn, ms);
  t.unref?.();
  return t;
}

/** ", N after a failed migration" when a pod's first migration (or more) failed. */
function retried(pods: EvacuationReport["pods"]): string {
  const n = pods.filter((p) => (p.attempts?.length ?? 0) > 0).length;
  return n ? `; ${n} after a failed migration (see each pod's attempts)` : "";
}

/** How long each phase took, from the journal's start times. */
export function phaseDurations(j: Journal, endMs: number): Record<string, number> {
  const entries = Object.entries(j.phase_started).sort((a, b) => a[1] - b[1]);
  const out: Record<string, number> = {};
  entries.forEach(([phase, t], i) => {
    out[phase] = (entries[i + 1]?.[1] ?? endMs) - t;
  });
  return out;
}
