/**
 * The small static pod init (src/native/pod-init.c): where to execute it from,
 * or null when this build has none (then pods start the older way, through
 * nsenter, unshare and `autopod __pod-init`; see launcher.ts).
 *
 * In the binary, build.ts embeds it (base64); it is written once to a sealed
 * memfd of the agent and executed as /proc/AGENT_PID/fd/N, so nothing is left
 * on disk and nothing can change it after the check. Run from the source
 * tree, it is the one build.ts compiled into .cache/native/.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { sealedMemfd } from "./libc.ts";

// Replaced at compile time by build.ts (`define`): the program, base64; "" when it was built without a C compiler.
declare const AUTOPOD_POD_INIT: string | undefined;

/** Where build.ts puts the program it compiles (and where a run from the source tree finds it). */
export const NATIVE_POD_INIT = join(import.meta.dir, "../../../.cache/native/pod-init");

let found: string | null | undefined;

/** A path the agent's children can execute the pod init by, or null when there is none. */
export function nativePodInit(): string | null {
  if (found !== undefined) return found;
  if (typeof AUTOPOD_POD_INIT === "string") {
    if (AUTOPOD_POD_INIT === "") return (found = null);
    const fd = sealedMemfd("autopod-pod-init", Buffer.from(AUTOPOD_POD_INIT, "base64"));
    // /proc/self would name the child that executes it; the fd is the agent's, kept open for its life.
    return (found = `/proc/${process.pid}/fd/${fd}`);
  }
  return (found = existsSync(NATIVE_POD_INIT) ? NATIVE_POD_INIT : null);
}
