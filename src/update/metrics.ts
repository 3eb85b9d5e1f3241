/**
 * The update cycle's counters, in Prometheus text, kept on disk so that a
 * reboot (which is what the cycle does) does not reset them.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { escapeLabel } from "../status/prometheus.ts";

export interface UpdateCounters {
  /** Cycles that ended, by outcome: completed, failed, not_needed. */
  cycles: Record<string, number>;
  /** Failures by the step that failed. */
  failures: Record<string, number>;
  /** Pods evacuated, by outcome (migrated, suspended, stayed). */
  evacuatedPods: Record<string, number>;
  /** Pods brought home, by outcome (returned, restored, failed). */
  returnedPods: Record<string, number>;
  /** Each pod's downtime (freeze) in its last evacuation, in seconds. */
  podDowntimeSeconds: Record<string, number>;
  lockWaits: number;
  lockWaitSeconds: number;
  /** Update commands run, by result (ok, failed). */
  updates: Record<string, number>;
  reboots: number;
}

const empty = (): UpdateCounters => ({
  cycles: {},
  failures: {},
  evacuatedPods: {},
  returnedPods: {},
  podDowntimeSeconds: {},
  lockWaits: 0,
  lockWaitSeconds: 0,
  updates: {},
  reboots: 0,
});

/** At most this many pods' downtimes are kept (the newest), so the series stay bounded. */
const MAX_POD_SERIES = 256;

export class UpdateMetrics {
  readonly #path: string | null;
  #c: UpdateCounters;
  /** The cycle's phase now ("idle" when none runs). */
  phase = "idle";

  constructor(path: string | null) {
    this.#path = path;
    this.#c = empty();
    if (path) {
      try {
        this.#c = { ...empty(), ...(JSON.parse(readFileSync(path, "utf8")) as Partial<UpdateCounters>) };
      } catch {
        // none yet, or unreadable: start from zero (Prometheus copes with a reset)
      }
    }
  }

  get counters(): Readonly<UpdateCounters> {
    return this.#c;
  }

  cycleEnded(outcome: string): void {
    bump(this.#c.cycles, outcome);
    this.#save();
  }

  failed(step: string): void {
    bump(this.#c.failures, step);
    this.#save();
  }

  evacuated(pods: { pod: string; outcome: string; freezeMs?: number }[]): void {
    for (const p of pods) {
      bump(this.#c.evacuatedPods, p.outcome);
      if (p.freezeMs !== undefined) {
        delete this.#c.podDowntimeSeconds[p.pod];
        this.#c.podDowntimeSeconds[p.pod] = p.freezeMs / 1000;
      }
    }
    const names = Object.keys(this.#c.podDowntimeSeconds);
    for (const n of names.slice(0, Math.max(0, names.length - MAX_POD_SERIES))) delete this.#c.podDowntimeSeconds[n];
    this.#save();
  }

  returned(pods: { outcome: string }[]): void {
    for (const p of pods) bump(this.#c.returnedPods, p.outcome);
    this.#save();
  }

  lockWaited(ms: number): void {
    this.#c.lockWaits++;
    this.#c.lockWaitSeconds += ms / 1000;
    this.#save();
  }

  updated(ok: boolean): void {
    bump(this.#c.updates, ok ? "ok" : "failed");
    this.#save();
  }

  rebooted(): void {
    this.#c.reboots++;
    this.#save();
  }

  /** The counters in the Prometheus text format (0.0.4). */
  format(): string {
    const c = this.#c;
    const lines: string[] = [];
    const fam = (name: string, type: "counter" | "gauge", help: string, samples: [Record<string, string>, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) {
        const l = Object.entries(labels)
          .map(([k, x]) => `${k}="${escapeLabel(x)}"`)
          .join(",");
        lines.push(`${name}${l ? `{${l}}` : ""} ${v}`);
      }
    };
    const by = (label: string, r: Record<string, number>): [Record<string, string>, number][] => Object.entries(r).map(([k, v]) => [{ [label]: k }, v]);
    fam("autopod_update_phase", "gauge", "The update cycle's phase now: 1 for the current one.", [[{ phase: this.phase }, 1]]);
    fam("autopod_update_cycles_total", "counter", "Update cycles that ended, by outcome.", by("outcome", c.cycles));
    fam("autopod_update_failures_total", "counter", "Update cycle failures, by the step that failed.", by("step", c.failures));
    fam("autopod_evacuated_pods_total", "counter", "Pods evacuated by the update cycle, by outcome.", by("outcome", c.evacuatedPods));
    fam("autopod_returned_pods_total", "counter", "Pods brought home after an update, by outcome.", by("outcome", c.returnedPods));
    fam("autopod_evacuation_pod_downtime_seconds", "gauge", "Each pod's downtime in its last evacuation.", by("pod", c.podDowntimeSeconds));
    fam("autopod_update_lock_waits_total", "counter", "Times the update cycle took the fleet lock.", [[{}, c.lockWaits]]);
    fam("autopod_update_lock_wait_seconds_total", "counter", "Time spent waiting for the fleet lock.", [[{}, c.lockWaitSeconds]]);
    fam("autopod_update_commands_total", "counter", "Update commands run, by result.", by("result", c.updates));
    fam("autopod_update_reboots_total", "counter", "Reboots the update cycle started.", [[{}, c.reboots]]);
    return lines.join("\n") + "\n";
  }

  #save(): void {
    if (!this.#path) return;
    try {
      writeFileSync(`${this.#path}.tmp`, JSON.stringify(this.#c), { mode: 0o600 });
      renameSync(`${this.#path}.tmp`, this.#path);
    } catch {
      // counters are best effort: the events on disk are the record
    }
  }
}

function bump(r: Record<string, number>, key: string): void {
  r[key] = (r[key] ?? 0) + 1;
}
