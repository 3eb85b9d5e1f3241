/**
 * Who may drive a migration: a cluster member that names another as the
 * source of a restore is refused (the named source is asked, over a
 * connection whose certificate must be its own, and does not confirm), and
 * nothing is restored; resume and abort need the secret the real source gave.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

let lan: TestCluster;
let a: TestHost;
let c: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("ma", ["a", "b", "c"], { routed: true });
  [a, , c] = lan.hosts as [TestHost, TestHost, TestHost];
  await lan.formCluster("miga", ["a", "b", "c"]);
}, 180_000);
afterAll(async () => {
  await lan?.dispose();
}, 120_000);

/** Host i's TLS files: it is that host who asks. */
function identityOf(i: number): { ca: string; cert: string; key: string } {
  const dir = join(lan.hosts[i]!.stateDir, "tls");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return { ca: read("ca.pem"), cert: read("host.pem"), key: read("host.key") };
}

describe("migration peer routes", () => {
  rootTest(
    "peer C claiming to be B: its restore is refused and nothing is restored; a resume without the secret is refused",
    async () => {
      // C holds a real image of a pod, and A has it: a restore would work if A believed the claim.
      await c.run("forged", ["sh", "-c", "while :; do usleep 100000; done"]);
      await Bun.sleep(500);
      const image = (await c.ok(["checkpoint", "forged"], 120_000)).split("\n")[0]!;
      await c.ok(["image", "push", image, "--to", "a"], 120_000);
      const id = randomUUID();
      const body = JSON.stringify({ pod: "forged", image, source: "b", rounds: [], secret: "ab".repeat(32) });
      const answer = await lan.clientGet(`${lan.urlOf(0)}/v1/migrations/${id}/restore`, identityOf(2), "POST", body);
      expect(answer).toStartWith("401 ");
      const { error } = JSON.parse(answer.slice(4)) as { error: { message: string } };
      expect(error.message).toContain(`"b" does not confirm migration "${id}" of pod "forged" to "a"`);
      expect((await a.pods()).find((p) => p.name === "forged")).toBeUndefined();
      // Resume and abort of a migration carry the source's secret: a member without it is refused (or finds nothing held).
      const resume = await lan.clientGet(`${lan.urlOf(0)}/v1/migrations/${id}/resume`, identityOf(2), "POST", "{}");
      expect(resume).toStartWith("400 ");
    },
    240_000,
  );
});
