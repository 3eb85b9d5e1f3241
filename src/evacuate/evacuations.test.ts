import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PreconditionError, UnavailableError } from "../errors.ts";
import { createLogger } from "../log.ts";
import type { MigrateReport } from "../migrate/index.ts";
import type { PodView } from "../pods/pod.ts";
import { type EvacuationPeer, Evacuations, type EvacuationsDeps } from "./evacuations.ts";
import { readRecord } from "./record.ts";

const GIB = 1 << 30;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "autopod-evac-unit-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A host with pods and fake peers: migrations and suspends are recorded, never real. */
function fakeHost(o: { pods: string[]; peers: Record<string, Partial<{ verdict: string; down: boolean; failMigrate: boolean }>>; slowMs?: number }) {
  const states = new Map(o.pods.map((p) => [p, "running"]));
  const log: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const view = (name: string, state: string) => ({ name, state, address: `10.213.9.${130 + o.pods.indexOf(name)}/32`, memoryBytes: 64 << 20 }) as PodView;
  const peer = (host: string): EvacuationPeer => {
    const p = o.peers[host]!;
    return {
      info: async () => {
        if (p.down) throw new UnavailableError(`Peer "${host}" refused or unreachable: timed out`);
        return { host, criu: "4.2.1", cpuFlags: ["avx2"], memory: { availableBytes: 8 * GIB }, disk: { freeBytes: 100 * GIB }, verdict: p.verdict ?? "ok" };
      },
      pods: async () => ({ host, pods: [] }),
      maintenance: async () => null,
      returnPod: async (origin, pod) => {
        log.push(`return ${pod} from ${host} to ${origin}`);
        states.set(pod, "running");
        return { pod, freezeMs: 10, bytesSent: 100, totalMs: 50 };
      },
    };
  };
  const deps: EvacuationsDeps = {
    stateDir: dir,
    pods: { list: () => [...states].map(([n, s]) => view(n, s)) },
    migrate: async (name, req) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await Bun.sleep(o.slowMs ?? 5);
      inFlight--;
      if (o.peers[req.to]!.failMigrate) throw new PreconditionError(`Cannot migrate pod "${name}" to "${req.to}": it broke; the pod runs on here`);
      log.push(`migrate ${name} to ${req.to}`);
      states.delete(name);
      // p2 goes by post-copy: its page pull is reported apart.
      return { freezeMs: 42, bytesSent: 1000, rounds: [] as MigrateReport["rounds"], pages: name === "p2" ? { bytes: 5000, ms: 9 } : null } as MigrateReport;
    },
    suspend: async (name) => {
      log.push(`suspend ${name}`);
      states.set(name, "checkpointed");
      return { image: "a".repeat(63) + String(o.pods.indexOf(name)), freezeMs: 7 };
    },
    resume: async (image) => {
      const name = o.pods[Number(image.slice(63))]!;
      log.push(`restore ${name}`);
      states.set(name, "running");
    },
    local: async () => ({ criuVersion: "4.2.1", cpuFlags: ["avx2"] }),
    peers: { names: () => Object.keys(o.peers), client: peer },
    hostName: () => "a",
    verdict: () => "reboot_required",
    log: createLogger({ write: () => {} }),
  };
  return { ev: new Evacuations(deps), log, states, maxInFlight: () => maxInFlight };
}

describe("Evacuations", () => {
  test("migrates every running pod, spread, at most --parallel at once, and records where each went", async () => {
    const h = fakeHost({ pods: ["p1", "p2", "p3", "p4"], peers: { b: {}, c: {} }, slowMs: 30 });
    const r = await h.ev.evacuate({ parallel: 2 });
    expect(r.pods.map((p) => p.outcome)).toEqual(["migrated", "migrated", "migrated", "migrated"]);
    expect(r.pods.filter((p) => p.to === "b").length).toBe(2);
    expect(r.pods[0]).toMatchObject({ freezeMs: 42, bytesSent: 1000 });
    expect(r.pods[0]!.pagesBytes).toBeUndefined();
    expect(r.pods[1]).toMatchObject({ pod: "p2", bytesSent: 1000, pagesBytes: 5000 });
    expect(h.maxInFlight()).toBe(2);
    expect(
      readRecord(dir)
        .map((a) => a.pod)
        .sort(),
    ).toEqual(["p1", "p2", "p3", "p4"]);
    expect(h.ev.maintenance()).toEqual({ host: "a", verdict: "reboot_required", maintenance: "away" });
  });

  test("--parallel 1 moves one pod at a time", async () => {
    const h = fakeHost({ pods: ["p1", "p2", "p3"], peers: { b: {} }, slowMs: 20 });
    await h.ev.evacuate({ parallel: 1 });
    expect(h.maxInFlight()).toBe(1);
  });

  test("a dry run plans and moves nothing", async () => {
    const h = fakeHost({ pods: ["p1", "p2"], peers: { b: {}, c: { verdict: "reboot_required" } } });
    const events: string[] = [];
    const r = await h.ev.evacuate({ dryRun: true }, (e) => events.push(e.message));
    expect(r.dryRun).toBe(true);
    expect(r.pods.map((p) => p.to)).toEqual(["b", "b"]);
    expect(h.log).toEqual([]);
    expect(readRecord(dir)).toEqual([]);
    expect(events).toContain('not a destination: host "c" needs a reboot itself');
  });

  test("a failed migration falls back to suspending; with --no-suspend the pod stays running, with the reason", async () => {
    const h = fakeHost({ pods: ["p1"], peers: { b: { failMigrate: true } } });
    const r = await h.ev.evacuate({ suspendFallback: false });
    const why = 'migration to "b" failed: Cannot migrate pod "p1" to "b": it broke; the pod runs on here';
    expect(r.pods).toEqual([{ pod: "p1", outcome: "stayed", reason: why, attempts: [{ to: "b", reason: why }] }]);
    expect(h.states.get("p1")).toBe("running");
    const s = await h.ev.evacuate({});
    expect(s.pods[0]).toMatchObject({ pod: "p1", outcome: "suspended", freezeMs: 7 });
    expect(h.states.get("p1")).toBe("checkpointed");
  });

  test("a migration that fails to its peer is tried on another peer that can take the pod; the report says each attempt", async () => {
    const h = fakeHost({ pods: ["p1", "p2"], peers: { b: {}, c: { failMigrate: true } } });
    const events: string[] = [];
    const r = await h.ev.evacuate({ suspendFallback: false, parallel: 1 }, (e) => events.push(`${e.pod ?? ""}: ${e.message}`));
    expect(r.pods.map((p) => `${p.pod}:${p.outcome}:${p.to}`)).toEqual(["p1:migrated:b", "p2:migrated:b"]);
    // p2 was planned for c (the spread): it failed there once, then went to b.
    expect(r.pods[1]!.attempts).toEqual([{ to: "c", reason: 'migration to "c" failed: Cannot migrate pod "p2" to "c": it broke; the pod runs on here' }]);
    expect(r.pods[0]!.attempts).toBeUndefined();
    expect(events).toContain('p2: trying "b" instead (attempt 2)');
    expect(h.log).toEqual(["migrate p1 to b", "migrate p2 to b"]);
    expect(readRecord(dir).map((a) => `${a.pod}:${a.outcome === "migrated" ? a.to : ""}`)).toEqual(["p1:b", "p2:b"]);
  });

  test("a pod planned for a peer that failed another pod meanwhile is placed afresh first; a peer that cannot be asked then is skipped", async () => {
    const h = fakeHost({ pods: ["p1", "p2", "p3", "p4"], peers: { b: {}, c: { failMigrate: true } } });
    const c = (h.ev.deps.peers.client("c") as EvacuationPeer).info;
    let asked = 0;
    const peers = h.ev.deps.peers;
    const client = peers.client.bind(peers);
    (peers as { client: (n: string) => EvacuationPeer }).client = (n) => {
      const x = client(n);
      if (n !== "c") return x;
      // c answers the first plan, then is gone (its agent died at its first migration).
      return { ...x, info: async () => (++asked > 1 ? Promise.reject(new UnavailableError('Peer "c" refused or unreachable')) : c()) };
    };
    const r = await h.ev.evacuate({ suspendFallback: false, parallel: 1 });
    expect(r.pods.map((p) => `${p.outcome}:${p.to}`)).toEqual(["migrated:b", "migrated:b", "migrated:b", "migrated:b"]);
    // Only the first pod for c tried it: the second was placed afresh, and c no longer answered.
    expect(r.pods.filter((p) => p.attempts).length).toBe(1);
  });

  test("every peer fails: each is tried once, then the fallback; a pod no longer running here is not tried again", async () => {
    const h = fakeHost({ pods: ["p1"], peers: { b: { failMigrate: true }, c: { failMigrate: true } } });
    const r = await h.ev.evacuate({});
    expect(r.pods[0]!.outcome).toBe("suspended");
    expect(r.pods[0]!.attempts!.map((a) => a.to).sort()).toEqual(["b", "c"]);
    expect(r.pods[0]!.reason).toContain("it broke");
    expect(h.log).toEqual(["suspend p1"]);

    const g = fakeHost({ pods: ["p1"], peers: { b: { failMigrate: true }, c: {} } });
    const migrate = g.ev.deps.migrate;
    (g.ev.deps as { migrate: typeof migrate }).migrate = async (name, req, on) => {
      g.states.set(name, "unknown");
      return migrate(name, req, on);
    };
    // b is planned first (the name breaks the tie): its failure leaves the pod in no state to move or suspend.
    const s = await g.ev.evacuate({});
    expect(s.pods[0]).toMatchObject({ outcome: "stayed", attempts: [{ to: "b" }] });
    expect(s.pods[0]!.reason).toContain("it is not running here afterwards, so it was not tried elsewhere");
    expect(g.log).toEqual([]);
  });

  test("no peer answers: suspended, and bringHome restores them and clears the record", async () => {
    const h = fakeHost({ pods: ["p1", "p2"], peers: { b: { down: true } } });
    const r = await h.ev.evacuate({});
    expect(r.pods.map((p) => p.outcome)).toEqual(["suspended", "suspended"]);
    expect(r.pods[0]!.reason).toContain('host "b" could not be asked: Peer "b" refused or unreachable');
    const home = await h.ev.bringHome();
    expect(home.pods.map((p) => `${p.pod}:${p.outcome}`).sort()).toEqual(["p1:restored", "p2:restored"]);
    expect(readRecord(dir)).toEqual([]);
    expect(h.ev.maintenance().maintenance).toBeNull();
  });

  test("bringHome asks each peer for the pods it took, naming this host as the origin", async () => {
    const h = fakeHost({ pods: ["p1", "p2"], peers: { b: {}, c: {} } });
    await h.ev.evacuate({});
    h.log.length = 0;
    const home = await h.ev.bringHome();
    expect(home.pods.map((p) => p.outcome)).toEqual(["returned", "returned"]);
    // Each pod's freeze and bytes on its way back, as its peer reported them.
    expect(home.pods.map((p) => [p.freezeMs, p.bytesSent])).toEqual([
      [10, 100],
      [10, 100],
    ]);
    expect(h.log.sort()).toEqual(["return p1 from b to a", "return p2 from c to a"].sort());
  });

  test("bad input: unknown or own name in --to, --parallel out of range", async () => {
    const h = fakeHost({ pods: ["p1"], peers: { b: {} } });
    await expect(h.ev.evacuate({ to: ["zed"] })).rejects.toThrow('--to "zed" is not a peer of this host (its peers: b)');
    await expect(h.ev.evacuate({ to: ["a"] })).rejects.toThrow('--to "a" is this host');
    await expect(h.ev.evacuate({ parallel: 0 })).rejects.toThrow('--parallel must be a whole number from 1 to 16, not "0"');
    await expect(h.ev.evacuate({ parallel: 1.5 })).rejects.toThrow("--parallel");
    expect(h.log).toEqual([]);
  });

  test("one evacuation at a time", async () => {
    const h = fakeHost({ pods: ["p1"], peers: { b: {} }, slowMs: 50 });
    const first = h.ev.evacuate({});
    await expect(h.ev.evacuate({})).rejects.toThrow("This host is evacuating already");
    expect(h.ev.maintenance().maintenance).toBe("evacuating");
    await first;
  });
});

describe("Evacuations record", () => {
  test("a pod is recorded before it moves, and leaves the record when its migration fails; an entry whose pod runs here is dropped on return", async () => {
    const h = fakeHost({ pods: ["p1"], peers: { b: { failMigrate: true } } });
    const seen: string[][] = [];
    const ev = h.ev as unknown as { deps: { migrate: (...a: unknown[]) => Promise<unknown> } };
    const migrate = ev.deps.migrate;
    ev.deps.migrate = async (...a) => {
      seen.push(readRecord(dir).map((r) => `${r.pod}:${r.outcome}`));
      return migrate(...a);
    };
    const r = await h.ev.evacuate({ suspendFallback: false });
    expect(r.pods[0]!.outcome).toBe("stayed");
    expect(seen).toEqual([["p1:migrated"]]);
    expect(readRecord(dir)).toEqual([]);

    // An agent that died mid-migration: the record says "migrated", the pod runs here after all.
    const { recordAway } = await import("./record.ts");
    recordAway(dir, { pod: "p1", outcome: "migrated", to: "b", at: new Date().toISOString() });
    const home = await h.ev.bringHome();
    expect(home.pods).toEqual([{ pod: "p1", outcome: "returned", from: "b", reason: "it runs here already" }]);
    expect(h.log).toEqual([]);
    expect(readRecord(dir)).toEqual([]);
  });
});
