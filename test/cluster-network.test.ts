/**
 * One pod network across the cluster (network.mode = "routed"), with real
 * agents on a LAN: a pod checkpointed on A, pushed to B and restored there
 * keeps its address and its LAN client's TCP connection, and A no longer
 * answers for it; two hosts never hand out one address, and an address a pod
 * of another host holds is refused, naming the host.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import { sh, type TestHost } from "./_pods.ts";
import { BUN, REPO, rootTest } from "./_support.ts";

const T = 180_000;

async function ipJson(netns: string, args: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await sh(["ip", "-n", netns, "-j", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip -n ${netns} ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout || "[]");
}

async function lanMac(h: TestHost): Promise<string> {
  return String((await ipJson(h.netns, ["link", "show", "dev", "lan0"]))[0]!.address);
}

/** From the client namespace: a TCP connection to the pod's echo server, one line there and back. */
async function echoes(lan: TestCluster, ip: string): Promise<boolean> {
  const script = `
    const s = await Bun.connect({ hostname: process.argv[1], port: 7000, socket: { data(_s, d) { process.stdout.write(d); process.exit(0); } } });
    s.write("ping\\n");
    setTimeout(() => process.exit(1), 3000);`;
  const r = await sh(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, "-e", script, ip]);
  return r.exitCode === 0 && r.stdout.trim() === "ping";
}

/** Host routes to `ip` (its /32), in the host's namespace. */
async function podRoutes(h: TestHost, ip: string): Promise<Array<Record<string, unknown>>> {
  return ipJson(h.netns, ["route", "show", `${ip}/32`]);
}

describe("routed pod network across two hosts", () => {
  let lan: TestCluster;
  let a: TestHost;
  let b: TestHost;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return;
    lan = await TestCluster.start("cn", ["a", "b"], { routed: true });
    [a, b] = lan.hosts as [TestHost, TestHost];
    await lan.formCluster("net", ["a", "b"]);
  }, 120_000);
  afterAll(async () => {
    await lan?.dispose();
  }, 120_000);

  rootTest(
    "a pod moved from A to B keeps its address and its client's TCP connection; A stops answering for it",
    async () => {
      const pod = await a.run("echo", ["nc", "-ll", "-p", "7000", "-e", "cat"]);
      expect(pod.address).toMatch(/\/32$/);
      const ip = pod.address.split("/")[0]!;
      expect(ip.startsWith(`${lan.prefix}.`)).toBe(true);
      expect(await podRoutes(a, ip)).toHaveLength(1);
      await Bun.sleep(200);
      const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        await Bun.sleep(700);
        const id = await a.ok(["checkpoint", "echo"]);
        await a.ok(["image", "push", id, "--to", "b"]);
        await b.ok(["restore", id]);
        expect((await b.pod("echo")).address).toBe(pod.address);
        await Bun.sleep(1500);
      } finally {
        client.kill("SIGTERM");
      }
      const report = JSON.parse((await new Response(client.stdout).text()).trim());
      expect(report.errors).toEqual([]);
      expect(report.closed).toBe(false);
      expect(report.sent).toBeGreaterThan(100);
      expect(report.received).toBe(report.sent);

      // A has no route to the pod any more (so no proxy ARP for it); B has.
      expect(await podRoutes(a, ip)).toEqual([]);
      expect(await podRoutes(b, ip)).toHaveLength(1);
      // The client's ARP entry for the pod names B, and the address answers from there.
      expect(await echoes(lan, ip)).toBe(true);
      const neigh = await ipJson(lan.client, ["neigh", "show", ip]);
      expect(neigh[0]?.lladdr).toBe(await lanMac(b));
      // A's LAN side does not claim the address: asked directly, only B answers.
      const flush = await sh(["ip", "-n", lan.client, "neigh", "flush", "dev", "lan0"]);
      expect(flush.exitCode).toBe(0);
      expect(await echoes(lan, ip)).toBe(true);
      expect((await ipJson(lan.client, ["neigh", "show", ip]))[0]?.lladdr).toBe(await lanMac(b));
      // A may go away now (the host being patched): the pod does not need it.
      await lan.link(0, false);
      try {
        expect(await echoes(lan, ip)).toBe(true);
      } finally {
        await lan.link(0, true);
      }
    },
    T,
  );

  rootTest(
    "routed, a checkpoint and restore on the same host keep the connection and the route",
    async () => {
      const pod = await a.run("here", ["nc", "-ll", "-p", "7000", "-e", "cat"]);
      const ip = pod.address.split("/")[0]!;
      await Bun.sleep(200);
      const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      try {
        await Bun.sleep(700);
        const id = await a.ok(["checkpoint", "here"]);
        await a.ok(["restore", id]);
        await Bun.sleep(1500);
      } finally {
        client.kill("SIGTERM");
      }
      const report = JSON.parse((await new Response(client.stdout).text()).trim());
      expect(report.errors).toEqual([]);
      expect(report.closed).toBe(false);
      expect(report.received).toBe(report.sent);
      expect(await podRoutes(a, ip)).toHaveLength(1);
      expect((await ipJson(lan.client, ["neigh", "show", ip]))[0]?.lladdr).toBe(await lanMac(a));
      await a.ok(["rm", "--force", "here"]);
      expect(await podRoutes(a, ip)).toEqual([]);
    },
    T,
  );

  rootTest(
    "two hosts never hand out one address; an address a pod of another host holds is refused, naming it",
    async () => {
      const onA = await a.run("u1", ["sleep", "1000"]);
      const onB = await b.run("u2", ["sleep", "1000"]);
      const onA2 = await a.run("u3", ["sleep", "1000"]);
      // The running pods of both hosts (the moved one on B too) all have different addresses.
      const all = [...(await a.pods()), ...(await b.pods())].filter((p) => p.state === "running").map((p) => p.address);
      expect(all.length).toBeGreaterThanOrEqual(3);
      expect(new Set(all).size).toBe(all.length);
      // And a new one avoids even the address of a pod checkpointed elsewhere.
      const recordedOnA = (await a.pods()).map((p) => p.address);
      expect(recordedOnA).not.toContain(onB.address);
      for (const p of [onA, onB, onA2]) expect(p.address).toMatch(/\/32$/);

      // Asked for by hand: refused, naming the host.
      const taken = await b.cli(["run", "dup", "--rootfs", process.env.AUTOPOD_TEST_ROOTFS ?? "", "--ip", onA.address, "--", "sleep", "1000"]);
      expect(taken.exitCode).not.toBe(0);
      expect(taken.stderr).toMatch(/in use on host "a" by its pod "u1"/);
      expect((await b.pods()).map((p) => p.name)).not.toContain("dup");

      // A restore on B of a pod that still runs on A: refused before anything is made.
      const id = await a.ok(["checkpoint", "u1", "--leave-running"]);
      await a.ok(["image", "push", id, "--to", "b"]);
      const netnsBefore = b.podNetnses().sort();
      const refused = await b.cli(["restore", id]);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/in use on host "a" by its pod "u1"/);
      expect((await b.pods()).map((p) => p.name)).not.toContain("u1");
      expect(b.podNetnses().sort()).toEqual(netnsBefore);

      // Once it left A (stopped), its route there is gone and B may restore it.
      await a.ok(["stop", "u1", "--timeout", "1"]);
      for (let i = 0; i < 50 && (await podRoutes(a, onA.address.split("/")[0]!)).length; i++) await Bun.sleep(100);
      expect(await podRoutes(a, onA.address.split("/")[0]!)).toEqual([]);
      await b.ok(["restore", id]);
      expect((await b.pod("u1")).address).toBe(onA.address);
    },
    T,
  );
});
