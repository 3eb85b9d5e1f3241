/**
 * Cluster trust, with real agents in network namespaces on one LAN: init,
 * add-host/join, peers, and every refusal at the TLS layer (no certificate,
 * another CA's, an expired one, a revoked host's, revocation reaching a host
 * that was down at the time).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createCa, issueHostCertificate } from "../src/cluster/ca.ts";
import { TestCluster } from "./_cluster.ts";
import { rootTest } from "./_support.ts";

describe("a cluster of three hosts", () => {
  let lan: TestCluster;
  const tls = (i: number) => join(lan.hosts[i]!.stateDir, "tls");
  const pem = (i: number, f: string) => readFileSync(join(tls(i), f), "utf8");

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return;
    lan = await TestCluster.start("ct", ["a", "b", "c"]);
  }, 120_000);
  afterAll(async () => {
    await lan?.dispose();
  });

  rootTest(
    "init, add-host, join, peers: every host sees the others with what they say of themselves",
    async () => {
      const [a, b, c] = lan.hosts as [(typeof lan.hosts)[0], (typeof lan.hosts)[0], (typeof lan.hosts)[0]];
      const init = JSON.parse(await a.ok(["cluster", "init", "--name", "test", "--host", "a", "--address", lan.addressOf(0), "--json"]));
      expect(init).toMatchObject({ joined: true, cluster: "test", host: "a", isCa: true, listening: `${lan.addressOf(0)}:7443` });
      // A second init is refused and changes nothing.
      const again = await a.cli(["cluster", "init", "--name", "other"]);
      expect(again.exitCode).not.toBe(0);
      expect(again.stderr).toContain('already "a" in cluster "test"');

      for (const [i, h] of [
        [1, b],
        [2, c],
      ] as const) {
        const name = ["a", "b", "c"][i]!;
        const out = join(lan.dir, `${name}.bundle`);
        await a.ok(["cluster", "add-host", name, "--address", lan.addressOf(i), "--out", out]);
        expect(readFileSync(out, "utf8")).toContain("PRIVATE KEY");
        expect((await a.cli(["cluster", "add-host", name, "--out", join(lan.dir, "dup.bundle")])).stderr).toContain("already a member");
        const joined = JSON.parse(await h.ok(["cluster", "join", out, "--json"]));
        expect(joined).toMatchObject({ joined: true, cluster: "test", host: name, isCa: false });
      }
      // Bad bundles are refused with a reason.
      const bogus = join(lan.dir, "bogus.bundle");
      await Bun.write(bogus, "{}");
      expect((await a.cli(["cluster", "join", bogus])).stderr).toContain("Not a valid host bundle");

      const names = ["a", "b", "c"];
      for (const [i, h] of lan.hosts.entries()) for (const [j] of lan.hosts.entries()) if (i !== j) await h.ok(["peer", "add", names[j]!, lan.urlOf(j)]);
      const { peers } = JSON.parse(await a.ok(["peers", "--json"]));
      expect(peers.map((p: { name: string; reachable: boolean; info: { host: string } }) => [p.name, p.reachable, p.info.host])).toEqual([
        ["b", true, "b"],
        ["c", true, "c"],
      ]);
      expect(peers[0].info.kernel).toBeTruthy();
      expect(peers[0].info.cpuFlags.length).toBeGreaterThan(10);
      expect(peers[0].rttMs).toBeGreaterThan(0);
      // A peer added under a name its certificate does not carry is refused.
      await a.ok(["peer", "add", "impostor", lan.urlOf(1)]);
      const imp = JSON.parse(await a.ok(["peers", "--json"])).peers.find((p: { name: string }) => p.name === "impostor");
      expect(imp.reachable).toBe(false);
      expect(imp.error).toContain('for "b", not "impostor"');
      await a.ok(["peer", "rm", "impostor"]);
    },
    120_000,
  );

  rootTest(
    "no certificate, another CA's, an expired one: refused in the handshake; a member's certificate gets through",
    async () => {
      const ca = pem(0, "ca.pem");
      const url = `${lan.urlOf(0)}/v1/health`;
      // The control: a member's own certificate reaches the health check from the LAN.
      expect(await lan.clientGet(url, { ca, cert: pem(1, "host.pem"), key: pem(1, "host.key") })).toBe('200 {"ok":true}');
      expect(await lan.clientGet(url, { ca })).toStartWith("refused");
      const other = await createCa("evil");
      const foreign = await issueHostCertificate(other, "b", [lan.addressOf(1)]);
      expect(await lan.clientGet(url, { ca, cert: foreign.certPem, key: foreign.keyPem })).toStartWith("refused");
      const expired = await issueHostCertificate({ certPem: ca, keyPem: pem(0, "ca.key") }, "b", [], {
        notBefore: new Date(Date.now() - 3 * 86400e3),
        notAfter: new Date(Date.now() - 86400e3),
      });
      expect(await lan.clientGet(url, { ca, cert: expired.certPem, key: expired.keyPem })).toStartWith("refused");
      // Hostile input from a member: a revocation list that is not one, and an oversized body.
      const bad = await lan.clientGet(`${lan.urlOf(0)}/v1/cluster/crl`, { ca, cert: pem(1, "host.pem"), key: pem(1, "host.key") }, "POST", "garbage");
      expect(bad).toStartWith("400 ");
      const big = await lan.clientGet(`${lan.urlOf(0)}/v1/cluster/crl`, { ca, cert: pem(1, "host.pem"), key: pem(1, "host.key") }, "POST", "x".repeat(2 << 20));
      expect(big).toStartWith("413 ");
      expect(await lan.clientGet(url, { ca, cert: pem(2, "host.pem"), key: pem(2, "host.key") })).toBe('200 {"ok":true}');
    },
    120_000,
  );

  rootTest(
    "remove-host: the removed host is refused by every member, also one that was down when it was removed",
    async () => {
      const [a, b, c] = lan.hosts as [(typeof lan.hosts)[0], (typeof lan.hosts)[0], (typeof lan.hosts)[0]];
      const ca = pem(0, "ca.pem");
      const cCert = { ca, cert: pem(2, "host.pem"), key: pem(2, "host.key") };
      // c and b are down when c is removed.
      await c.killAgent("SIGKILL");
      await b.killAgent("SIGTERM");
      const r = JSON.parse(await a.ok(["cluster", "remove-host", "c", "--json"]));
      expect(r.removed).toBe("c");
      expect(r.peers.map((p: { peer: string; adopted: boolean }) => [p.peer, p.adopted])).toEqual([
        ["b", false],
        ["c", false],
      ]);
      expect(await lan.clientGet(`${lan.urlOf(0)}/v1/health`, cCert)).toStartWith("refused");
      // b comes back with its old list: it still lets c in, until it talks to a member.
      await b.startAgent();
      expect(await lan.clientGet(`${lan.urlOf(1)}/v1/health`, cCert)).toBe('200 {"ok":true}');
      await b.ok(["peers"]);
      let after = "";
      for (let i = 0; i < 50; i++) {
        after = await lan.clientGet(`${lan.urlOf(1)}/v1/health`, cCert);
        if (after.startsWith("refused")) break;
        await Bun.sleep(100);
      }
      expect(after).toStartWith("refused");
      expect(JSON.parse(await b.ok(["cluster", "show", "--json"])).revoked).toHaveLength(1);
      // The removed host, back up, reaches no one; members still reach each other.
      await c.startAgent();
      const fromC = JSON.parse(await c.ok(["peers", "--json"])).peers;
      expect(fromC.every((p: { reachable: boolean }) => !p.reachable)).toBe(true);
      const fromA = JSON.parse(await a.ok(["peers", "--json"])).peers;
      expect(fromA.map((p: { name: string; reachable: boolean }) => [p.name, p.reachable])).toEqual([
        ["b", true],
        ["c", false],
      ]);
      expect(fromA[1].error).toContain("revoked");
      // A removed host cannot be removed twice, and a non-CA host cannot remove anyone.
      expect((await a.cli(["cluster", "remove-host", "c"])).stderr).toContain("already removed");
      expect((await b.cli(["cluster", "remove-host", "a"])).stderr).toContain("not the CA");
    },
    120_000,
  );
});
