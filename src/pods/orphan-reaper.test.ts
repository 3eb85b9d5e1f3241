import { expect, test } from "bun:test";
import { FakeHost } from "./fake-host.ts";
import { OrphanReaper } from "./orphan-reaper.ts";

/** A zombie child of the agent that is no pod's (what a failed CRIU restore leaves). */
function orphan(host: FakeHost, pid: number): void {
  host.procs.set(pid, { startTime: 1, exit: { code: 0, signal: null }, isChild: true, reaped: false, ignoresTerm: false, cgroup: null });
}

test("a zombie child that is no pod's is reaped at the second sweep that sees it (fuzz finding P2)", () => {
  const host = new FakeHost();
  const reaper = new OrphanReaper(host, { claimedPids: () => new Set() });
  orphan(host, 4242);
  expect(reaper.sweep()).toEqual([]);
  expect(host.zombieChildren()).toEqual([4242]);
  expect(reaper.sweep()).toEqual([4242]);
  expect(host.zombieChildren()).toEqual([]);
  expect(reaper.reaped).toBe(1);
});

test("a pod's pid 1 is left for the runtime, and nothing is reaped while a pod is between states", () => {
  const host = new FakeHost();
  let claimed: Set<number> | null = new Set([7]);
  const reaper = new OrphanReaper(host, { claimedPids: () => claimed });
  orphan(host, 7);
  orphan(host, 8);
  reaper.sweep();
  expect(reaper.sweep()).toEqual([8]);
  expect(reaper.sweep()).toEqual([]);
  expect(host.zombieChildren()).toEqual([7]);
  claimed = null;
  orphan(host, 9);
  reaper.sweep();
  expect(reaper.sweep()).toEqual([]);
  claimed = new Set([7]);
  expect(reaper.sweep()).toEqual([9]);
});
