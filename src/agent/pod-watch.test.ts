import { afterEach, expect, test } from "bun:test";
import { createLogger } from "../log.ts";
import type { PodRecord } from "../pods/pod.ts";
import { PodWatch } from "./pod-watch.ts";

let watch: PodWatch | null = null;
const children: Array<ReturnType<typeof Bun.spawn>> = [];
afterEach(() => {
  watch?.stop();
  watch = null;
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

function setUp() {
  const child = Bun.spawn(["sleep", "30"]);
  children.push(child);
  const state = { polls: 0, sweeps: 0, zombies: [] as number[], pid: child.pid as number | null };
  watch = new PodWatch({
    poll: () => {
      state.polls++;
      if (child.exitCode !== null || child.signalCode !== null) state.pid = null; // as the runtime records an exit
    },
    list: () => (state.pid === null ? [] : [{ pid: state.pid, state: "running" } as PodRecord]),
    orphans: {
      sweep: () => {
        state.sweeps++;
        return [];
      },
    },
    zombieChildren: () => state.zombies,
    log: createLogger({ write: () => {} }),
    sweepMs: 20,
    busyMs: 100,
  });
  return { child, state, watch };
}

test("after a change it sweeps for a while, then no timer runs until a pod exits, which is seen at once", async () => {
  const { child, state, watch: w } = setUp();
  w.start();
  await Bun.sleep(400);
  const busy = state.polls;
  expect(busy).toBeGreaterThanOrEqual(3); // the sweeps after the change (start counts as one)
  expect(state.sweeps).toBe(busy);
  await Bun.sleep(500);
  expect(state.polls).toBe(busy); // idle: nothing runs

  const t0 = performance.now();
  child.kill("SIGKILL");
  await child.exited;
  while (state.polls === busy && performance.now() - t0 < 2000) await Bun.sleep(5);
  expect(state.polls).toBeGreaterThan(busy);
  expect(performance.now() - t0).toBeLessThan(1000);
}, 10_000);

test("while zombies wait to be reaped, it keeps sweeping; once they are gone it stops", async () => {
  const { state, watch: w } = setUp();
  state.zombies = [4242];
  w.start();
  await Bun.sleep(400);
  const during = state.sweeps;
  await Bun.sleep(200);
  expect(state.sweeps).toBeGreaterThan(during);
  state.zombies = [];
  await Bun.sleep(100);
  const after = state.sweeps;
  await Bun.sleep(300);
  expect(state.sweeps).toBe(after);
}, 10_000);
