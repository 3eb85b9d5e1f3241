/** The pod lifecycle: which state may follow which. */
import { ConflictError } from "../errors.ts";
import type { PodState } from "./pod.ts";

const NEXT: Record<PodState, readonly PodState[]> = {
  creating: ["running", "removing"],
  running: ["stopping", "exited", "checkpointing", "removing"],
  stopping: ["stopped", "exited", "removing"],
  stopped: ["removing"],
  exited: ["removing"],
  // A checkpoint either leaves the pod running, or stops it (for a move), or fails with it dead.
  checkpointing: ["running", "checkpointed", "exited"],
  checkpointed: ["restoring", "removing"],
  restoring: ["running", "checkpointed", "removing"],
  removing: [],
};

export function canTransition(from: PodState, to: PodState): boolean {
  return NEXT[from].includes(to);
}

/** Throw a ConflictError that says what was asked and why not: `Cannot stop pod "web": it is checkpointing`. */
export function assertTransition(name: string, from: PodState, to: PodState, verb: string): void {
  if (!canTransition(from, to)) throw new ConflictError(`Cannot ${verb} pod "${name}": it is ${from}`);
}

/** States in which the pod has processes (or may have: creating). */
export function hasProcesses(s: PodState): boolean {
  return s === "running" || s === "stopping" || s === "checkpointing" || s === "creating" || s === "restoring";
}
