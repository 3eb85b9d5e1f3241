/**
 * A pod starts without spawning `ip` (issue 17): on a bridge, the small init
 * makes the pod's net namespace and its veth pair by rtnetlink. An `ip` first
 * on the agent's PATH that logs each run tells. A start that fails once the
 * init has made them leaves neither behind.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isRoot, rootTest } from "./_support.ts";
import { sh, testRootfs, TestHost } from "./_pods.ts";

let host: TestHost;
let ipLog = "";
beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("sp");
  const bin = join(host.dir, "bin");
  mkdirSync(bin);
  ipLog = join(host.dir, "ip.log");
  writeFileSync(ipLog, "");
  const realIp = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((p) => Bun.file(p).size > 0)!;
  writeFileSync(join(bin, "ip"), `#!/bin/sh\necho "ip $*" >> '${ipLog}'\nexec ${realIp} "$@"\n`);
  chmodSync(join(bin, "ip"), 0o755);
  await host.killAgent("SIGTERM");
  await host.startAgent(undefined, { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}` });
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

/** The host side of the pod network: this agent's namespaces and the veths on the test host's bridge. */
async function networkLeft() {
  const links = await host.inNet(["ip", "-o", "link", "show", "master", host.bridge]);
  return { netns: host.podNetnses().sort(), veths: links.stdout.split("\n").filter(Boolean).length };
}

rootTest(
  "a pod starts without spawning ip, with its address and default route, and reaches the host's bridge",
  async () => {
    const before = readFileSync(ipLog, "utf8");
    const pod = await host.run("quiet", ["sleep", "1000"]);
    expect(readFileSync(ipLog, "utf8").slice(before.length)).toBe("");
    expect(pod.state).toBe("running");
    const route = await host.cli(["exec", "quiet", "--", "ip", "route"]);
    expect(route.stdout).toContain(`default via ${host.prefix}.1 dev eth0`);
    const addr = await host.cli(["exec", "quiet", "--", "ip", "-4", "addr", "show", "eth0"]);
    expect(addr.stdout).toContain(`inet ${pod.address}`);
    const ping = await host.cli(["exec", "quiet", "--", "ping", "-c", "1", "-W", "5", `${host.prefix}.1`]);
    expect(ping.exitCode).toBe(0);
    await host.ok(["rm", "-f", "quiet"]);
    expect(await networkLeft()).toEqual({ netns: [], veths: 0 });
  },
  60_000,
);

rootTest(
  "a start that fails after the init made the network leaves no namespace and no veth",
  async () => {
    const before = await networkLeft();
    // The init fails in the pod's pid 1, long after it made the namespace and the veth.
    const r = await host.cli(["run", "broken", "--rootfs", testRootfs(), "--workdir", "/etc/passwd", "--", "sleep", "1000"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('enter the working directory "/etc/passwd": Not a directory');
    expect(await networkLeft()).toEqual(before);
    // The names are free again: the same pod starts.
    await host.run("broken", ["sleep", "1000"]);
    await host.ok(["rm", "-f", "broken"]);
  },
  60_000,
);

rootTest(
  "a leftover net namespace under the pod's name (a crash between making and recording) is replaced",
  async () => {
    const ns = `autopod-${host.agentKey}-left`;
    expect((await sh(["ip", "netns", "add", ns])).exitCode).toBe(0);
    const pod = await host.run("left", ["sleep", "1000"]);
    // The name is the pod's own namespace now, not the leftover.
    expect(statSync(`/run/netns/${ns}`).ino).toBe(statSync(`/proc/${pod.pid}/ns/net`).ino);
    await host.ok(["rm", "-f", "left"]);
    expect(host.podNetnses()).not.toContain(ns);
  },
  60_000,
);

rootTest(
  "the command runs in every cgroup of its pod from its first instruction (the init joins them while pid 1 builds its root)",
  async () => {
    for (let i = 0; i < 5; i++) {
      const name = `cg${i}`;
      await host.run(name, ["cat", "/proc/self/cgroup"]);
      const log = await host.waitForLog(name, /\n$/);
      const lines = (await host.cli(["logs", name])).stdout.split("\n").filter(Boolean);
      // v1 (this project's hosts): the memory, cpu, cpuacct and pids hierarchies; v2 alone: the one "0::" line.
      const v1 = lines.filter((l) => /^\d+:[^:]*\b(memory|cpu|cpuacct|pids)\b[^:]*:/.test(l));
      const ours = v1.length ? v1 : lines.filter((l) => l.startsWith("0::"));
      expect({ log, ours: ours.length > 0 }).toEqual({ log, ours: true });
      for (const l of ours) expect({ line: l, isPods: l.endsWith(`/autopod/${host.agentKey}/${name}`) }).toEqual({ line: l, isPods: true });
      await host.ok(["rm", "-f", name]);
    }
  },
  120_000,
);
