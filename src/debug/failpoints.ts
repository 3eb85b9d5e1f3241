/**
 * Failpoints, as etcd's gofail, TiKV's fail-rs and FreeBSD's fail(9) have
 * them: named points in the code (`await failpoint("checkpoint.dumped")`)
 * where a fault test makes the agent sleep, fail or die at an exact phase.
 *
 * Off unless the agent is started with `--failpoints` (for tests only): then
 * a point costs one Map size check. Each point is named in FAILPOINTS, so a
 * misspelt point fails the type check and a misspelt spec fails loudly.
 *
 * Spec: `name=actions;name2=actions`. Actions: `term(->term)*`, where a term
 * is `[COUNT*]ACTION` and ACTION one of
 *   off          nothing
 *   sleep(MS)    wait MS milliseconds
 *   error(MSG)   throw a FailpointError with MSG (also `error`)
 *   kill         the agent SIGKILLs itself, there and then
 *   pause(FILE)  wait until FILE exists or the point is set again (also `pause`)
 *   corrupt      only at a corruption point (isCorruption): the code there
 *                alters the data it handles (`if (corrupts(name)) ...`)
 * A term with a count is used for that many hits, then the next one is; the
 * last term without a count stays. `1*off->kill` kills at the second hit;
 * `1*kill` kills at the first only. MSG and FILE may not hold ";" or "->".
 *
 * The one place in library code that ends the process: that is the point.
 */
import { existsSync, writeSync } from "node:fs";
import { AutopodError, InvalidArgumentError, PreconditionError } from "../errors.ts";

/** Every point in the code, by phase, with what holds when it is hit. */
export const FAILPOINTS = {
  "checkpoint.started": { doc: "the pod is marked checkpointing and the journal written; nothing dumped, the tasks run" },
  "checkpoint.criu-started": { doc: "criu dump was spawned and its pid journaled (kill only: CRIU runs on)", isSync: true },
  "checkpoint.dumped": { doc: "CRIU dumped the pod and left its tasks stopped; nothing stored" },
  "checkpoint.files-stored": { doc: "the pod's layer and volumes are in the store, uncommitted; the tasks are stopped" },
  "checkpoint.images-stored": { doc: "CRIU's files are in the store too; the image is not committed yet" },
  "checkpoint.committed": { doc: "the image is committed and the journal says so; the tasks are stopped (or, --leave-running, running)" },
  "checkpoint.pod-killed": { doc: "the stopped tasks were killed; the pod is not marked checkpointed yet" },
  "checkpoint.ended": { doc: "the pod is marked checkpointed and its release scheduled; not answered yet, the journal still there" },
  "pods.release-checkpointed": { doc: "a checkpointed pod's processes are gone, after the answer; its network and cgroup are not released yet" },
  "pods.pid-reported": {
    doc: "a new pod's init reported its pid; without the small init, its launcher (unshare) is not killed yet, so the init is not the agent's child (the small init's launcher exits by itself)",
  },
  "pods.address-checked": {
    doc: "a pod arriving from an image passed the address check against the peers; not registered yet (the peers do not see it)",
  },
  "restore.files-made": { doc: "the image's files, layer, base and volumes are made in a temporary directory; no journal yet" },
  "restore.prepared": { doc: "journaled; the pod's record, layer, locked network, cgroup and root are ready; CRIU not started" },
  "restore.criu-started": { doc: "criu restore was spawned and its pid journaled (kill only: CRIU runs on)", isSync: true },
  "restore.criu-done": { doc: "CRIU restored the tasks, held stopped; their page images are not all verified" },
  "restore.verified": { doc: "every page matched its hash; the tasks are still stopped" },
  "restore.continued": { doc: "the tasks run again; the network is still locked and the pod not yet recorded running" },
  "migrate.round": { doc: "source: a pre-copy round is about to dump (--leave-running); the pod runs; the journal says precopy" },
  "migrate.freezing": { doc: "source: the journal says frozen; the final dump is about to start; the pod still runs" },
  "migrate.frozen": { doc: "source: the final dump left the tasks stopped and the network locked; nothing stored yet" },
  "migrate.delta-sent": { doc: "source: the final image is committed here and pushed; the destination has not restored it" },
  "migrate.ready": { doc: "source: the destination holds its copy restored and stopped; the source has not committed" },
  "migrate.committed": { doc: "source: the journal says committed; the source's stopped copy is not killed yet" },
  "migrate.pulling": { doc: "source, post-copy: the destination's copy runs and pulls its pages; the source's is stopped" },
  "migrate.dest-pulling": { doc: "destination, post-copy: the copy runs, its pages are being pulled" },
  "migrate.resuming": { doc: "source: its copy is killed; the destination not yet told to resume" },
  "migrate.dest-prepared": { doc: "destination: the pod's files, record and locked network are made; CRIU not started" },
  "migrate.dest-ready": { doc: "destination: the copy is restored, stopped, verified and journaled ready; not answered yet" },
  "migrate.dest-resuming": { doc: "destination: told (or learnt) that the source committed; the copy not yet continued" },
  "export.chunk-framed": {
    doc: "a chunk was framed into an export (a push to a peer, a file); `corrupt` flips a byte of it, which the receiver must catch",
    isCorruption: true,
  },
  "import.manifest-read": { doc: "an import's manifest is read and checked; no chunk taken" },
  "import.chunks-stored": { doc: "every chunk of an import is stored and the trailer checked; nothing committed" },
  "import.committed": { doc: "the imported image and its chunks are committed; its writer is not closed yet" },
} as const satisfies Record<string, { doc: string; isSync?: boolean; isCorruption?: boolean }>;

export type FailpointName = keyof typeof FAILPOINTS;

/** The fault a failpoint's `error` action raises. */
export class FailpointError extends AutopodError {
  override name = "FailpointError";
  readonly point: FailpointName;
  constructor(point: FailpointName, message: string) {
    super("internal", `${message} (failpoint "${point}")`);
    this.point = point;
  }
}

type Action =
  | { kind: "off" }
  | { kind: "sleep"; ms: number }
  | { kind: "error"; message: string }
  | { kind: "kill" }
  | { kind: "pause"; file: string | null }
  | { kind: "corrupt" };

interface Term {
  /** Hits left for this term; null: it stays. */
  left: number | null;
  action: Action;
}

interface Point {
  spec: string;
  terms: Term[];
  /** Hits since the point was set. */
  hits: number;
}

/** What `list` shows of a point. */
export interface FailpointInfo {
  name: FailpointName;
  doc: string;
  /** The actions it was set to, or null when it is off. */
  actions: string | null;
  hits: number;
}

let isEnabled = false;
const active = new Map<FailpointName, Point>();
/** Paused hits, woken when their point is set again or cleared. */
const paused = new Map<FailpointName, Set<() => void>>();

const MAX_SLEEP_MS = 600_000;
const PAUSE_POLL_MS = 20;

/**
 * The point `name`: does nothing unless a test set it. Returns a promise
 * only when it must wait (sleep, pause); await it where the code is async.
 */
export function failpoint(name: FailpointName): void | Promise<void> {
  if (active.size === 0) return;
  return hit(name);
}

/** A corruption point (synchronous): true when a test set it to `corrupt` for this hit; the caller then alters its data. */
export function corrupts(name: FailpointName): boolean {
  if (active.size === 0) return false;
  const p = active.get(name);
  if (p === undefined) return false;
  p.hits++;
  const term = p.terms.find((t) => t.left === null || t.left > 0);
  if (term === undefined) return false;
  if (term.left !== null) term.left--;
  return term.action.kind === "corrupt";
}

/** Allow failpoints in this process (the agent's `--failpoints`) and set those in `spec`. */
export function enableFailpoints(spec: string): void {
  const parsed = parseFailpointSpec(spec);
  isEnabled = true;
  for (const [name, actions] of parsed) setFailpoint(name, actions);
}

export function areFailpointsEnabled(): boolean {
  return isEnabled;
}

/** Set one point's actions ("off" or "" clears it). Wakes hits paused there. */
export function setFailpoint(name: string, actions: string): void {
  if (!isEnabled) throw new PreconditionError("Failpoints are off: start the agent with --failpoints to use them (for tests only)");
  const point = checkName(name);
  const terms = parseActions(point, actions);
  if (terms.every((t) => t.action.kind === "off")) active.delete(point);
  else active.set(point, { spec: actions.trim(), terms, hits: 0 });
  wake(point);
}

/** Turn one point off. */
export function clearFailpoint(name: string): void {
  setFailpoint(name, "off");
}

/** Every point, set or not. */
export function listFailpoints(): FailpointInfo[] {
  return (Object.keys(FAILPOINTS) as FailpointName[]).map((name) => {
    const p = active.get(name);
    return { name, doc: FAILPOINTS[name].doc, actions: p?.spec ?? null, hits: p?.hits ?? 0 };
  });
}

/** Back to the start: off and not allowed (unit tests). */
export function resetFailpoints(): void {
  for (const name of [...active.keys()]) {
    active.delete(name);
    wake(name);
  }
  isEnabled = false;
}

/** `name=actions;...` as pairs, every name and action checked; an empty spec sets nothing. */
export function parseFailpointSpec(spec: string): Array<[FailpointName, string]> {
  const out: Array<[FailpointName, string]> = [];
  for (const part of spec.split(";")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) throw new InvalidArgumentError(`Failpoint "${part.trim()}" has no actions: write NAME=ACTIONS, like checkpoint.dumped=kill`);
    const name = checkName(part.slice(0, eq).trim());
    const actions = part.slice(eq + 1).trim();
    parseActions(name, actions);
    out.push([name, actions]);
  }
  return out;
}

function checkName(name: string): FailpointName {
  if (Object.hasOwn(FAILPOINTS, name)) return name as FailpointName;
  const [phase] = name.split(".");
  const near = Object.keys(FAILPOINTS).filter((n) => n.startsWith(`${phase}.`));
  throw new InvalidArgumentError(
    `No failpoint "${name}"${near.length ? `: did you mean one of ${near.join(", ")}?` : `: the points are ${Object.keys(FAILPOINTS).join(", ")}`}`,
  );
}

function parseActions(point: FailpointName, actions: string): Term[] {
  const text = actions.trim();
  if (text === "") return [{ left: null, action: { kind: "off" } }];
  return text.split("->").map((raw) => {
    const m = /^\s*(?:(\d{1,9})\s*\*\s*)?([a-z]+)\s*(?:\((.*)\))?\s*$/s.exec(raw);
    if (!m) throw new InvalidArgumentError(`Cannot parse failpoint action "${raw.trim()}" of "${point}": write [COUNT*]ACTION, like 1*kill or sleep(500)`);
    const [, count, kind, arg] = m;
    const left = count === undefined ? null : Number(count);
    const action = parseAction(point, kind!, arg);
    if (isCorruptionPoint(point) !== (action.kind === "corrupt") && action.kind !== "off") {
      throw new InvalidArgumentError(
        isCorruptionPoint(point)
          ? `Failpoint "${point}" alters data: it can only corrupt, not ${action.kind}`
          : `Failpoint action "corrupt" of "${point}": only a point that handles data (${corruptionPoints().join(", ")}) can corrupt`,
      );
    }
    if (isSyncPoint(point) && action.kind !== "kill" && action.kind !== "off") {
      throw new InvalidArgumentError(`Failpoint "${point}" is hit while CRIU runs, in synchronous code: it can only kill, not ${action.kind}`);
    }
    return { left, action };
  });
}

function isSyncPoint(point: FailpointName): boolean {
  return (FAILPOINTS[point] as { isSync?: boolean }).isSync === true;
}

function isCorruptionPoint(point: FailpointName): boolean {
  return (FAILPOINTS[point] as { isCorruption?: boolean }).isCorruption === true;
}

function corruptionPoints(): string[] {
  return (Object.keys(FAILPOINTS) as FailpointName[]).filter(isCorruptionPoint);
}

function parseAction(point: FailpointName, kind: string, arg: string | undefined): Action {
  switch (kind) {
    case "off":
    case "kill":
    case "corrupt":
      if (arg !== undefined) throw new InvalidArgumentError(`Failpoint action "${kind}" of "${point}" takes no argument (got "${arg}")`);
      return { kind };
    case "sleep": {
      const ms = Number(arg);
      if (arg === undefined || !/^\d+$/.test(arg.trim()) || ms > MAX_SLEEP_MS) {
        throw new InvalidArgumentError(`Failpoint action "sleep" of "${point}" needs milliseconds from 0 to ${MAX_SLEEP_MS} (got "${arg ?? ""}")`);
      }
      return { kind, ms };
    }
    case "error":
      return { kind, message: arg?.trim() || "Injected failure" };
    case "pause": {
      const file = arg?.trim() || null;
      if (file !== null && !file.startsWith("/"))
        throw new InvalidArgumentError(`Failpoint action "pause" of "${point}" needs an absolute path (got "${file}")`);
      return { kind, file };
    }
    default:
      throw new InvalidArgumentError(`Unknown failpoint action "${kind}" of "${point}": use off, sleep(MS), error(MSG), kill, pause(FILE) or corrupt`);
  }
}

function hit(name: FailpointName): void | Promise<void> {
  const p = active.get(name);
  if (p === undefined) return;
  p.hits++;
  const term = p.terms.find((t) => t.left === null || t.left > 0);
  if (term === undefined) return;
  if (term.left !== null) term.left--;
  const a = term.action;
  switch (a.kind) {
    case "off":
      return;
    case "sleep":
      return Bun.sleep(a.ms);
    case "error":
      throw new FailpointError(name, a.message);
    case "kill":
      writeSync(2, `failpoint "${name}": the agent kills itself (SIGKILL)\n`);
      process.kill(process.pid, "SIGKILL");
      return new Promise<void>(() => {}); // never: the process is gone
    case "pause":
      return pause(name, a.file);
    case "corrupt":
      return; // only corrupts() acts on it
  }
}

function pause(name: FailpointName, file: string | null): Promise<void> {
  if (file !== null && existsSync(file)) return Promise.resolve();
  writeSync(2, `failpoint "${name}": paused until ${file ? `"${file}" exists or ` : ""}the point is set again\n`);
  return new Promise<void>((resolve) => {
    const waiters = paused.get(name) ?? new Set();
    paused.set(name, waiters);
    let timer: ReturnType<typeof setInterval> | undefined;
    const done = () => {
      clearInterval(timer);
      waiters.delete(done);
      resolve();
    };
    waiters.add(done);
    if (file !== null) {
      timer = setInterval(() => {
        if (existsSync(file)) done();
      }, PAUSE_POLL_MS);
    }
  });
}

function wake(name: FailpointName): void {
  const waiters = paused.get(name);
  if (waiters) for (const w of [...waiters]) w();
}
