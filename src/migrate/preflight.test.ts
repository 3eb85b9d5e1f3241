import { describe, expect, test } from "bun:test";
import type { PeerFacts, PeerPodList } from "./peer.ts";
import { type PodNeeds, preflightRefusal } from "./preflight.ts";

const GIB = 1 << 30;
const pod: PodNeeds = { name: "web", address: "10.213.5.130/32", memoryBytes: GIB, diskBytes: GIB, criuVersion: "4.2.1", cpuFlags: ["avx2", "sse4_2"] };
const info: PeerFacts = {
  host: "b",
  criu: "4.2.1",
  cpuFlags: ["avx2", "sse4_2"],
  memory: { availableBytes: 4 * GIB },
  disk: { freeBytes: 10 * GIB },
};
const none: PeerPodList = { host: "b", pods: [] };

describe("preflightRefusal", () => {
  test("a peer that can take the pod", () => {
    expect(preflightRefusal(pod, info, none)).toBeNull();
  });
  test("no CRIU, or an older one", () => {
    expect(preflightRefusal(pod, { ...info, criu: null }, none)).toBe('host "b" has no working CRIU');
    expect(preflightRefusal(pod, { ...info, criu: "4.1.0" }, none)).toContain("CRIU 4.1.0");
  });
  test("missing CPU features", () => {
    expect(preflightRefusal(pod, { ...info, cpuFlags: ["sse4_2"] }, none)).toContain("avx2");
  });
  test("too little memory or disk", () => {
    expect(preflightRefusal(pod, { ...info, memory: { availableBytes: GIB } }, none)).toContain("of memory available");
    expect(preflightRefusal(pod, { ...info, disk: { freeBytes: GIB } }, none)).toContain("free on disk");
  });
  test("the name or the address taken there", () => {
    expect(preflightRefusal(pod, info, { host: "b", pods: [{ name: "web", address: "10.213.5.131/32", live: false }] })).toBe(
      'host "b" already has a pod named "web"',
    );
    expect(preflightRefusal(pod, info, { host: "b", pods: [{ name: "db", address: "10.213.5.130/32", live: true }] })).toBe(
      'address 10.213.5.130 is taken on host "b" by its pod "db"',
    );
  });
});
