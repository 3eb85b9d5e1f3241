/**
 * The thread of ExitWatch (exit-watch.ts starts it; build.ts bundles it as
 * an entrypoint of its own). It sleeps in poll(2) on the watched pidfds and
 * a wake-up eventfd, so an idle agent costs no CPU: a pidfd becomes readable
 * when its process exits. Then it tells the main thread ("exited") and
 * sleeps on the shared control word until the main thread has looked (a
 * pidfd stays readable until it is closed). Imports nothing of autopod.
 *
 * Shared Int32Array layout: [0] go (bumped by main to re-arm), [1] stop,
 * [2] eventfd, [3] count, [4..] pidfds.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

declare const self: Worker;

const { i32, u64, ptr: P } = FFIType;
const libc = dlopen("libc.so.6", {
  poll: { args: [P, u64, i32], returns: i32 },
  read: { args: [i32, P, u64], returns: FFIType.i64 },
}).symbols;

const POLLIN = 1;

self.onmessage = (e: MessageEvent<SharedArrayBuffer>) => {
  const ctl = new Int32Array(e.data);
  const counter = new Uint8Array(8);
  for (;;) {
    if (Atomics.load(ctl, 1) !== 0) break;
    const go = Atomics.load(ctl, 0);
    const n = Math.max(0, Math.min(Atomics.load(ctl, 3), ctl.length - 4));
    // struct pollfd { int fd; short events; short revents; }
    const fds = new Int32Array(2 * (n + 1));
    fds[0] = Atomics.load(ctl, 2);
    for (let i = 0; i < n; i++) fds[2 * (i + 1)] = Atomics.load(ctl, 4 + i);
    for (let i = 0; i <= n; i++) fds[2 * i + 1] = POLLIN;
    const rc = libc.poll(ptr(fds), BigInt(n + 1), -1);
    if (Atomics.load(ctl, 1) !== 0) break;
    if (rc <= 0) continue; // EINTR
    if (fds[1]! >>> 16 !== 0) libc.read(fds[0]!, ptr(counter), 8n); // the set changed: read it again
    let exited = false;
    for (let i = 1; i <= n; i++) if (fds[2 * i + 1]! >>> 16 !== 0) exited = true;
    if (!exited) continue;
    self.postMessage("exited");
    Atomics.wait(ctl, 0, go);
  }
  self.postMessage("stopped");
};
