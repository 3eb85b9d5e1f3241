/**
 * Real services through live migration (the services root of scripts/make-services-rootfs.sh,
 * built when missing):
 * - Debian's nginx (a master as root, workers as www-data) moves A -> B while keep-alive clients on
 *   the LAN fetch a file in a loop: none of their requests fails, and they keep their connections;
 * - Debian's redis-server (as its own user, no persistence) moves A -> B while a client on the LAN
 *   pushes 1, 2, 3, ... to a list, one acknowledged write at a time: every acknowledged write is
 *   on B afterwards, read back with redis-cli, with no gap and no repeat.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import {
  nginxFiles,
  redisCli,
  servicesRootfs,
  startHttpClient,
  startNginx,
  startRedis,
  startRedisClient,
  stopHttpClient,
  stopRedisClient,
  waitForProgress,
} from "./_services.ts";
import { isRoot, rootTest } from "./_support.ts";

let lan: TestCluster;
let a: TestHost;
let b: TestHost;
let rootfs: string;
const scratch = mkdtempSync(join(tmpdir(), "autopod-migrate-services-"));

beforeAll(async () => {
  if (!isRoot) return;
  rootfs = servicesRootfs();
  lan = await TestCluster.start("ms", ["a", "b"], { routed: true });
  [a, b] = lan.hosts as [TestHost, TestHost];
  await lan.formCluster("migs", ["a", "b"]);
}, 600_000);
afterAll(async () => {
  await lan?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 120_000);

describe("nginx through autopod migrate", () => {
  rootTest(
    "A -> B with keep-alive clients on the LAN fetching throughout: no request fails, every connection kept",
    async () => {
      const ip = await startNginx(a, "web", rootfs, nginxFiles(scratch));
      // The clients run in the LAN's client namespace, as a machine on the LAN would.
      const client = startHttpClient({ netns: lan.client, dir: scratch } as TestHost, ip, 4);
      let freeze = "";
      try {
        await waitForProgress(async () => client.status()?.responses ?? 0, 200, "the HTTP client before the move");
        const report = JSON.parse(await a.ok(["migrate", "web", "--to", "b", "--json"], 180_000));
        expect(report.isResumeConfirmed).toBe(true);
        freeze = `frozen ${report.freezeMs} ms (${JSON.stringify(report.freezePhases)}; restore ${JSON.stringify(report.restorePhases)}), ${report.rounds.length} rounds, `;
        // The pod's base (Debian's root) was made on B while the pod still ran on A (staged with round 1), and the freeze's
        // restore did not wait for it (the source waits for the staging before it freezes).
        const log = readFileSync(join(b.dir, "agent.log"), "utf8")
          .split("\n")
          .filter((l) => l.includes('"msg":"staged a migration round') || l.includes('"msg":"restoring a migrating pod'))
          .map((l) => JSON.parse(l) as { msg: string; base_ms?: number; waited_ms?: number });
        expect(log.some((l) => l.msg.startsWith("staged") && typeof l.base_ms === "number")).toBe(true);
        expect(log.find((l) => l.msg.startsWith("restoring"))?.waited_ms).toBeLessThan(1000);
        expect((await a.pods()).find((p) => p.name === "web")).toBeUndefined();
        expect((await b.pod("web")).state).toBe("running");
        const atMove = client.status()!.responses;
        await waitForProgress(async () => client.status()?.responses ?? 0, atMove + 200, "the HTTP client after the move");
      } finally {
        const r = await stopHttpClient(client);
        console.log(`nginx migrated: ${freeze}${r.responses} responses, longest gap ${r.maxGapMs} ms`);
        expect(r).toMatchObject({ connections: 4, open: 4, errors: [], bodyLength: 16384 });
      }
      expect((await b.fetchText(`http://${ip}/file.txt`)).stdout.length).toBe(16384);
      await b.ok(["rm", "--force", "web"]);
    },
    300_000,
  );
});

describe("redis-server through autopod migrate", () => {
  rootTest(
    "A -> B with a client on the LAN writing throughout: every acknowledged write is on B, in order, once",
    async () => {
      const ip = await startRedis(a, "kv", rootfs);
      const client = startRedisClient(lan.client, scratch, ip, "log");
      let freeze = "";
      let acked = 0;
      try {
        await waitForProgress(async () => client.status()?.acked ?? 0, 200, "the Redis client before the move");
        const report = JSON.parse(await a.ok(["migrate", "kv", "--to", "b", "--json"], 180_000));
        expect(report.isResumeConfirmed).toBe(true);
        freeze = `frozen ${report.freezeMs} ms (${JSON.stringify(report.freezePhases)}; restore ${JSON.stringify(report.restorePhases)}), ${report.rounds.length} rounds, `;
        expect((await a.pods()).find((p) => p.name === "kv")).toBeUndefined();
        expect((await b.pod("kv")).state).toBe("running");
        const atMove = client.status()!.acked;
        await waitForProgress(async () => client.status()?.acked ?? 0, atMove + 200, "the Redis client after the move");
      } finally {
        const r = await stopRedisClient(client);
        acked = r.acked;
        console.log(`redis migrated: ${freeze}${r.acked} writes acknowledged, longest gap ${r.maxGapMs} ms`);
        expect(r).toMatchObject({ open: true, errors: [] });
      }
      // Read back on B, by Debian's own client: exactly 1..acked (the client stopped with no write in flight).
      const values = (await redisCli(b, "kv", ["LRANGE", "log", "0", "-1"])).stdout.trim().split("\n").map(Number);
      expect(values.length).toBe(acked);
      expect(values.every((v, i) => v === i + 1)).toBe(true);
      await b.ok(["rm", "--force", "kv"]);
    },
    300_000,
  );
});
