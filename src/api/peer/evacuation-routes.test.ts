import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import type { Cluster } from "../../cluster/cluster.ts";
import { readArrivals, recordArrival } from "../../evacuate/arrivals.ts";
import type { Evacuations } from "../../evacuate/evacuations.ts";
import { createLogger } from "../../log.ts";
import type { MigrateReport, MigrateRequest, Migrations } from "../../migrate/index.ts";
import type { PodView } from "../../pods/pod.ts";
import { createPeerApp } from "./app.ts";

let dir: string;
let app: Hono;
let migrated: Array<{ name: string; to: string }>;
const pods = new Map<string, string>();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "peer-evac-"));
  migrated = [];
  pods.clear();
  const migrations = {
    migrate: async (name: string, req: MigrateRequest) => {
      migrated.push({ name, to: req.to });
      return { freezeMs: 12, bytesSent: 3456, totalMs: 78 } as MigrateReport;
    },
  } as unknown as Migrations;
  const evacuations = { maintenance: () => ({ host: "b", verdict: "ok", maintenance: null }) } as unknown as Evacuations;
  app = createPeerApp({
    cluster: {} as Cluster,
    evacuations: {
      evacuations,
      migrations,
      stateDir: dir,
      pod: (name) => (pods.has(name) ? ({ name, state: pods.get(name)! } as PodView) : null),
      isPeer: (name) => name === "a" || name === "c",
    },
    info: async () => {
      throw new Error("not asked");
    },
    pods: () => ({ host: "b", pods: [] }),
    log: createLogger({ level: "error", write: () => {} }),
  });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ask = (body: unknown) =>
  app.request("/v1/evacuations/return", { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });

describe("peer evacuation routes", () => {
  test("GET /v1/maintenance answers the host's state", async () => {
    expect(await (await app.request("/v1/maintenance")).json()).toEqual({ host: "b", verdict: "ok", maintenance: null });
  });

  test("a pod goes back to the host it came from, and only then", async () => {
    pods.set("web", "running");
    recordArrival(dir, "web", "a");
    const res = await ask({ origin: "a", pod: "web" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ returned: { pod: "web", freezeMs: 12, bytesSent: 3456, totalMs: 78 } });
    expect(migrated).toEqual([{ name: "web", to: "a" }]);
    // It is no longer an arrival: nobody may ask for it again.
    expect(readArrivals(dir)).toEqual({});
  });

  test("refused: another peer than its origin, a host that is no peer, a pod that never arrived, one not running, bad input", async () => {
    pods.set("web", "running");
    pods.set("db", "checkpointed");
    recordArrival(dir, "web", "a");
    recordArrival(dir, "db", "a");
    const cases: Array<[unknown, number, string]> = [
      [{ origin: "c", pod: "web" }, 412, 'Pod "web" came to this host from "a", not from "c": only its origin may take it back'],
      [{ origin: "mallory", pod: "web" }, 400, '"mallory" is not a peer of this host'],
      [{ origin: "a", pod: "local" }, 404, 'Pod "local" did not come to this host by migration'],
      [{ origin: "a", pod: "db" }, 409, 'Cannot send pod "db" back: it is checkpointed here, not running'],
      [{ origin: "a", pod: "../../etc" }, 400, "Invalid pod name"],
      [{ origin: "a", pod: "web", to: "c" }, 400, "Invalid request"],
      [{ origin: "a" }, 400, "Invalid request"],
    ];
    for (const [body, status, message] of cases) {
      const res = await ask(body);
      expect([res.status, ((await res.json()) as { error: { message: string } }).error.message]).toEqual([status, expect.stringContaining(message)]);
    }
    expect(migrated).toEqual([]);
  });

  test("a pod recorded as arrived but gone since: refused, and forgotten", async () => {
    recordArrival(dir, "gone", "a");
    const res = await ask({ origin: "a", pod: "gone" });
    expect(res.status).toBe(404);
    expect(readArrivals(dir)).toEqual({});
  });
});
