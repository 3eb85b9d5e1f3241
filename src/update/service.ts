/**
 * The update cycle as the agent runs it: the policy checked at start (a bad
 * one is an error that stops the agent, never a silent no-op), the lock
 * service it names, the events and counters on disk under
 * <state_dir>/update/, and the cycle looking every check_seconds.
 */
import { hostname } from "node:os";
import { join } from "node:path";
import type { PolicyConfig } from "../config/schema.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { fileWallClock, systemWallClock } from "./clock.ts";
import { type CommandRunner, type StatusSource, UpdateCycle } from "./cycle.ts";
import { EtcdGateway } from "./etcd-gateway.ts";
import { EtcdLock } from "./etcd-lock.ts";
import type { Evacuator } from "./evacuator.ts";
import { EventLog } from "./events.ts";
import { FleetLock } from "./fleetlock.ts";
import { CycleJournal } from "./journal.ts";
import { NoLock, type RebootLock } from "./lock.ts";
import { UpdateMetrics } from "./metrics.ts";
import { UpdateWindows } from "./window.ts";

export interface UpdateServiceOptions {
  stateDir: string;
  policy: PolicyConfig;
  /** This host's name in the cluster, when it is in one. */
  clusterHost: () => string;
  status: StatusSource;
  evacuator: Evacuator;
  run: CommandRunner;
  bootId: () => string;
  log: Logger;
}

export interface UpdateService {
  cycle: UpdateCycle;
  events: EventLog;
  metrics: UpdateMetrics;
  windows: UpdateWindows;
  lockId: string;
  start(): void;
  stop(): void;
  /** What GET /v1/update answers. */
  view(): UpdateView;
}

export interface UpdateView {
  mode: string;
  trigger: string[];
  lock: { kind: string; group: string; id: string };
  window: { always: boolean; open: boolean; next_open: string | null; time_zone: string };
  cycle: { cycle: string; phase: string; started_at: string } | null;
}

/** Check the policy and build the service; throws InvalidArgumentError for a policy that cannot work. */
export function createUpdateService(o: UpdateServiceOptions): UpdateService {
  const p = o.policy;
  const clock = p.test_clock_file ? fileWallClock(p.test_clock_file) : systemWallClock;
  if (p.test_clock_file) o.log.warn("policy.test_clock_file is set: the update windows read a test clock; for tests only", { file: p.test_clock_file });
  const windows = new UpdateWindows(p.window, p.time_zone);
  windows.assertOpens(clock.now());
  if (p.mode === "evacuate-update-reboot" && p.reboot_command.length === 0) throw new InvalidArgumentError("policy.reboot_command is empty");
  const lockId = p.lock.id || sanitizeId(o.clusterHost()) || sanitizeId(hostname());
  if (!lockId) throw new InvalidArgumentError("policy.lock.id is empty and this host has no usable name: set policy.lock.id");
  const dir = join(o.stateDir, "update");
  const events = new EventLog(join(dir, "events.jsonl"), { log: o.log });
  const metrics = new UpdateMetrics(join(dir, "metrics.json"));
  const onLost = (why: string) => events.emit("error", "lock.lost", `The fleet lock was lost: ${why}`);
  let lock: RebootLock;
  if (p.lock.kind === "etcd")
    lock = new EtcdLock({ gateway: new EtcdGateway(p.lock.endpoints), id: lockId, group: p.lock.group, slots: p.lock.slots, ttlSeconds: p.lock.ttl, onLost });
  else if (p.lock.kind === "fleetlock") lock = new FleetLock({ endpoints: p.lock.endpoints, id: lockId, group: p.lock.group });
  else lock = new NoLock();
  const journal = new CycleJournal(join(dir, "journal.json"));
  const cycle = new UpdateCycle({
    policy: {
      mode: p.mode,
      trigger: p.trigger,
      updateCommand: p.update_command,
      rebootCommand: p.reboot_command,
      blockers: p.blockers,
      return: p.return,
      retrySeconds: p.retry_seconds,
      commandTimeoutSeconds: p.command_timeout_seconds,
      rebootTimeoutSeconds: p.reboot_timeout_seconds,
    },
    windows,
    clock,
    status: o.status,
    evacuator: o.evacuator,
    lock,
    run: o.run,
    journal,
    events,
    metrics,
    bootId: o.bootId,
  });
  return {
    cycle,
    events,
    metrics,
    windows,
    lockId,
    start() {
      // A journal left by the last agent is taken up even with mode off: a cycle under way must end safely.
      if (p.mode === "off" && !journal.read()) return;
      events.emit("info", "policy.loaded", `Update policy: mode "${p.mode}", lock ${p.lock.kind}`, {
        mode: p.mode,
        trigger: p.trigger,
        lock: p.lock.kind,
        windows: p.window.length,
      });
      cycle.start(p.check_seconds * 1000);
    },
    stop() {
      cycle.stop();
    },
    view() {
      const now = clock.now();
      const j = journal.read();
      const next = windows.nextOpen(now);
      return {
        mode: p.mode,
        trigger: p.trigger,
        lock: { kind: p.lock.kind, group: p.lock.group, id: lockId },
        window: {
          always: windows.isAlwaysOpen,
          open: windows.isOpen(now),
          next_open: next === null ? null : new Date(next).toISOString(),
          time_zone: p.time_zone,
        },
        cycle: j ? { cycle: j.cycle, phase: j.phase, started_at: j.started_at } : null,
      };
    },
  };
}

function sanitizeId(s: string): string {
  return s.replace(/[^a-zA-Z0-9._-]/g, "-").slice(0, 128);
}
