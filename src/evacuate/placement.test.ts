import { describe, expect, test } from "bun:test";
import type { PeerFacts } from "../migrate/peer.ts";
import { type Candidate, planEvacuation, type PodToPlace } from "./placement.ts";

const MIB = 1 << 20;
const GIB = 1 << 30;
const local = { criuVersion: "4.2.1", cpuFlags: ["avx2", "sse4_2"] };

function peer(
  host: string,
  o: { memory?: number; disk?: number; pods?: number; verdict?: string | null; criu?: string | null; flags?: string[] } = {},
): Candidate {
  const facts: PeerFacts = {
    host,
    criu: o.criu === undefined ? "4.2.1" : o.criu,
    cpuFlags: o.flags ?? ["avx2", "sse4_2"],
    memory: { availableBytes: o.memory ?? 8 * GIB },
    disk: { freeBytes: o.disk ?? 100 * GIB },
  };
  const pods = Array.from({ length: o.pods ?? 0 }, (_, i) => ({ name: `${host}-own${i}`, address: `10.213.9.${200 + i}/32`, live: true }));
  return { host, facts, pods: { host, pods }, verdict: o.verdict === undefined ? "ok" : o.verdict, maintenance: null };
}

function pods(n: number, memory = 128 * MIB): PodToPlace[] {
  return Array.from({ length: n }, (_, i) => ({ name: `p${i}`, address: `10.213.9.${130 + i}/32`, memoryBytes: memory, diskBytes: memory + 64 * MIB }));
}

const where = (plan: ReturnType<typeof planEvacuation>) => Object.fromEntries(plan.placements.map((p) => [p.pod, p.to]));

describe("planEvacuation", () => {
  test("spreads pods evenly over equal peers", () => {
    const plan = planEvacuation(pods(4), [peer("b"), peer("c")], local);
    const to = plan.placements.map((p) => p.to);
    expect(to.filter((h) => h === "b").length).toBe(2);
    expect(to.filter((h) => h === "c").length).toBe(2);
    expect(plan.peers.map((p) => p.planned)).toEqual([2, 2]);
  });

  test("counts the pods a peer has already", () => {
    const plan = planEvacuation(pods(3), [peer("b", { pods: 3 }), peer("c")], local);
    expect(plan.placements.map((p) => p.to)).toEqual(["c", "c", "c"]);
  });

  test("largest pod first, and memory taken by earlier placements is counted", () => {
    // c has room for the 2 GiB pod only once; b for neither big one.
    const ps: PodToPlace[] = [
      { name: "small", address: "10.213.9.1/32", memoryBytes: 100 * MIB, diskBytes: 200 * MIB },
      { name: "big1", address: "10.213.9.2/32", memoryBytes: 2 * GIB, diskBytes: 2 * GIB },
      { name: "big2", address: "10.213.9.3/32", memoryBytes: 2 * GIB, diskBytes: 2 * GIB },
    ];
    const plan = planEvacuation(ps, [peer("b", { memory: GIB }), peer("c", { memory: 3 * GIB })], local);
    expect(plan.placements.map((p) => p.pod)).toEqual(["big1", "big2", "small"]);
    expect(where(plan)).toEqual({ big1: "c", big2: null, small: "b" });
    const stays = plan.placements.find((p) => p.pod === "big2")!;
    expect(stays.reason).toContain('host "b" has 1 GiB of memory available');
    expect(stays.reason).toContain(`host "c" has 1 GiB of memory available`);
  });

  test("disk is counted like memory", () => {
    const plan = planEvacuation(pods(2, 512 * MIB), [peer("b", { disk: 800 * MIB })], local);
    expect(where(plan)).toEqual({ p0: "b", p1: null });
    expect(plan.placements[1]!.reason).toContain("free on disk");
  });

  test("never a peer that needs a reboot, is evacuating, is away, or is updating", () => {
    const cands = [
      peer("b", { verdict: "reboot_required" }),
      { ...peer("c"), maintenance: "evacuating" as const },
      { ...peer("d"), maintenance: "away" as const },
      { ...peer("e"), maintenance: "updating" as const },
    ];
    const plan = planEvacuation(pods(1), cands, local);
    expect(plan.placements[0]!.to).toBeNull();
    expect(plan.placements[0]!.reason).toBe(
      'no peer can take it: host "b" needs a reboot itself; host "c" is evacuating its own pods; ' +
        'host "d" has evacuated its pods and is about to update; host "e" is updating',
    );
    expect(plan.peers.every((p) => !p.isUsable)).toBe(true);
  });

  test("a clean peer before one with updates pending, even when it holds more pods", () => {
    const plan = planEvacuation(pods(2), [peer("b", { verdict: "security_update_available" }), peer("c", { pods: 5 })], local);
    expect(plan.placements.map((p) => p.to)).toEqual(["c", "c"]);
    // ... but a peer with updates pending still takes what the clean one cannot.
    const full = planEvacuation(pods(2, GIB), [peer("b", { verdict: "update_available" }), peer("c", { memory: GIB + 200 * MIB })], local);
    expect(full.placements.map((p) => p.to)).toEqual(["c", "b"]);
  });

  test("CRIU and CPU compatibility come from the migration pre-flight", () => {
    const plan = planEvacuation(pods(1), [peer("b", { criu: null }), peer("c", { flags: ["sse4_2"] })], local);
    expect(plan.placements[0]!.to).toBeNull();
    expect(plan.placements[0]!.reason).toContain('host "b" has no working CRIU');
    expect(plan.placements[0]!.reason).toContain("avx2");
  });

  test("a peer that could not be asked, and no peers at all", () => {
    const gone: Candidate = { host: "b", facts: null, pods: null, verdict: null, maintenance: null, error: "connection refused" };
    const plan = planEvacuation(pods(1), [gone], local);
    expect(plan.placements[0]).toEqual({ pod: "p0", to: null, reason: 'no peer can take it: host "b" could not be asked: connection refused' });
    expect(planEvacuation(pods(1), [], local).placements[0]).toEqual({ pod: "p0", to: null, reason: "this host has no peers" });
  });

  test("a pod whose name or address a peer has goes elsewhere", () => {
    const b = peer("b");
    b.pods!.pods.push({ name: "p0", address: "10.213.9.250/32", live: false });
    const plan = planEvacuation(pods(1), [b, peer("c", { pods: 4 })], local);
    expect(where(plan)).toEqual({ p0: "c" });
  });

  test("the input is not changed", () => {
    const b = peer("b");
    planEvacuation(pods(3), [b], local);
    expect(b.facts!.memory.availableBytes).toBe(8 * GIB);
    expect(b.pods!.pods).toEqual([]);
  });
});
