import { join } from "node:path";
/**
 * Pods outlive their agent: SIGTERM or kill -9 of the agent, then a new one
 * re-adopts them. Several agents share a machine, each with its own socket,
 * state, bridge and subnet. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { isRoot, rootTest } from "./_support.ts";
import { sh, TestHost } from "./_pods.ts";

const hosts: TestHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.dispose();
}, 60_000);

async function newHost(tag: string): Promise<TestHost> {
  const h = await TestHost.start(tag);
  hosts.push(h);
  return h;
}

async function fetchOk(h: TestHost, url: string): Promise<string> {
  let r = await h.fetchText(url);
  for (let i = 0; i < 50 && r.exitCode !== 0; i++) {
    await Bun.sleep(100);
    r = await h.fetchText(url);
  }
  return r.stdout;
}

const T = 90_000;

describe("agent restarts", () => {
  rootTest(
    "kill -9 of the agent, then a restart, re-adopts running pods; ps, stop and exec work",
    async () => {
      const h = await newHost("k");
      const web = await h.run("web", ["httpd", "-f", "-p", "80", "-h", "/var/www"], ["--ip", `${h.prefix}.20/24`]);
      await h.run("sleeper", ["sleep", "1000"]);
      await h.run("brief", ["sleep", "1"]);
      const agentPid = h.agent!.pid;

      await h.killAgent("SIGKILL");
      // The pods run on without it.
      expect(readFileSync(`/proc/${web.pid}/stat`, "utf8")).toContain("(httpd)");
      expect(await fetchOk(h, `http://${h.prefix}.20/`)).toBe("hello from an autopod pod\n");
      const down = await h.cli(["ps"]);
      expect(down.exitCode).not.toBe(0);
      expect(down.stderr).toContain(`No autopod agent answers at "${h.socket}"`);
      await Bun.sleep(1500); // "brief" ends while no agent watches

      await h.startAgent();
      expect(h.agent!.pid).not.toBe(agentPid);
      const pods = Object.fromEntries((await h.pods()).map((p) => [p.name, p]));
      expect(pods.web!.state).toBe("running");
      expect(pods.web!.pid).toBe(web.pid);
      expect(pods.sleeper!.state).toBe("running");
      expect(pods.brief!.state).toMatch(/^exited/);
      expect((await h.cli(["exec", "web", "hostname"])).stdout).toBe("web\n");

      const stop = await h.cli(["stop", "sleeper", "--timeout", "1"]);
      expect(stop.exitCode).toBe(0);
      expect((await h.pod("sleeper")).state).toBe("stopped");
      expect((await h.pod("web")).state).toBe("running");
      expect(await fetchOk(h, `http://${h.prefix}.20/`)).toBe("hello from an autopod pod\n");
    },
    T,
  );

  rootTest(
    "an agent replaced by a new binary (written, then renamed over the old, as install.sh does) re-adopts the pods",
    async () => {
      const { copyFileSync, renameSync, statSync } = await import("node:fs");
      const { DIST } = await import("./_support.ts");
      const h = await newHost("u");
      const bin = join(h.dir, "autopod");
      copyFileSync(DIST, bin);
      await h.killAgent("SIGTERM");
      await h.startAgent(bin);
      const p = await h.run("kept", ["sleep", "1000"]);
      const oldInode = statSync(bin).ino;
      copyFileSync(DIST, `${bin}.new`);
      renameSync(`${bin}.new`, bin);
      expect(statSync(bin).ino).not.toBe(oldInode);
      await h.killAgent("SIGTERM");
      await h.startAgent(bin);
      const after = await h.pod("kept");
      expect(after.state).toBe("running");
      expect(after.pid).toBe(p.pid);
      expect((await h.cli(["exec", "kept", "cat", "/proc/1/comm"])).stdout).toBe("sleep\n");
      expect((await h.cli(["stop", "kept", "--timeout", "1"])).exitCode).toBe(0);
    },
    T,
  );

  rootTest(
    "SIGTERM stops the agent but not its pods",
    async () => {
      const h = await newHost("t");
      const p = await h.run("keeps", ["sleep", "1000"]);
      await h.killAgent("SIGTERM");
      await Bun.sleep(300);
      expect(readFileSync(`/proc/${p.pid}/stat`, "utf8")).toContain("(sleep)");
      await h.startAgent();
      expect((await h.pod("keeps")).state).toBe("running");
      // A pod adopted from an earlier agent is not our child: its end is still seen.
      process.kill(p.pid!, "SIGKILL");
      const ended = await h.waitForState("keeps", /^exited/);
      expect(ended.pid).toBeNull();
    },
    T,
  );
});

describe("two agents on one machine", () => {
  rootTest(
    "each has its own socket, state, bridge and subnet, and sees only its pods",
    async () => {
      const a = await newHost("a");
      const b = await newHost("z");
      expect(a.socket).not.toBe(b.socket);
      expect(a.subnet).not.toBe(b.subnet);
      // The same pod name on both agents.
      const pa = await a.run("same", ["httpd", "-f", "-p", "80", "-h", "/var/www"]);
      const pb = await b.run("same", ["httpd", "-f", "-p", "80", "-h", "/var/www"]);
      await a.run("only-a", ["sleep", "1000"]);
      expect(pa.address.startsWith(a.prefix + ".")).toBe(true);
      expect(pb.address.startsWith(b.prefix + ".")).toBe(true);
      expect((await a.pods()).map((p) => p.name).sort()).toEqual(["only-a", "same"]);
      expect((await b.pods()).map((p) => p.name)).toEqual(["same"]);
      expect(await fetchOk(a, `http://${pa.address.split("/")[0]}/`)).toBe("hello from an autopod pod\n");
      expect(await fetchOk(b, `http://${pb.address.split("/")[0]}/`)).toBe("hello from an autopod pod\n");
      // Removing on one leaves the other's pod of the same name alone.
      expect((await a.cli(["rm", "-f", "same"])).exitCode).toBe(0);
      expect((await b.pod("same")).state).toBe("running");
      expect(a.podNetnses().length).toBe(1);
      expect(b.podNetnses().length).toBe(1);
    },
    T,
  );

  rootTest(
    "a second agent on the same state directory or socket is refused",
    async () => {
      const a = hosts[0] ?? (await newHost("d"));
      const { autopod } = await import("./_support.ts");
      const r = await autopod(["agent", "--config", a.configPath], { timeoutMs: 20_000 });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/Another agent is using the state directory|Another agent is listening/);
      expect((await a.cli(["ps"])).exitCode).toBe(0);
    },
    T,
  );
});

describe("outbound NAT", () => {
  rootTest(
    "is off by default; with network.nat a pod reaches beyond the host as the host's address",
    async () => {
      const plain = hosts[0] ?? (await newHost("p"));
      expect((await plain.inNet(["nft", "list", "tables"])).stdout).not.toContain("autopod_");

      const natHost = await TestHost.start("n", { nat: true });
      hosts.push(natHost);
      const table = `autopod_${natHost.agentKey}`;
      expect((await natHost.inNet(["nft", "list", "table", "ip", table])).stdout).toContain(
        `ip saddr ${natHost.subnet} oifname != "${natHost.bridge}" masquerade`,
      );

      // An "outside" namespace one link away from the host (outside the pod subnet, so
      // the pod routes to it through the bridge), with a listener that reports who called.
      const outside = `${natHost.netns}-out`;
      const [hostIp, outIp] = ["10.213.0.253", "10.213.0.254"];
      await sh(["ip", "netns", "add", outside]);
      try {
        await sh(["ip", "-n", natHost.netns, "link", "add", "apout0", "type", "veth", "peer", "name", "eth0", "netns", outside]);
        // A /32 route each way keeps the outside apart from the pod subnet on the bridge.
        await sh(["ip", "-n", natHost.netns, "link", "set", "apout0", "up"]);
        await sh(["ip", "-n", natHost.netns, "addr", "add", `${hostIp}/32`, "peer", `${outIp}/32`, "dev", "apout0"]);
        await sh(["ip", "-n", outside, "link", "set", "eth0", "up"]);
        await sh(["ip", "-n", outside, "addr", "add", `${outIp}/32`, "peer", `${hostIp}/32`, "dev", "eth0"]);
        const script = `Bun.listen({ hostname: "0.0.0.0", port: 7070, socket: { open(s) { s.write(s.remoteAddress + "\\n"); s.end(); }, data() {} } }); process.stdout.write("ready\\n");`;
        const listener = Bun.spawn(["nsenter", `--net=/run/netns/${outside}`, "--", process.execPath, "-e", script], { stdout: "pipe" });
        const reader = listener.stdout.getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
        await natHost.run("out", ["sleep", "1000"]);
        const r = await natHost.cli(["exec", "out", "nc", "-w", "3", outIp, "7070"]);
        listener.kill();
        expect(r.stdout.trim()).toBe(hostIp);
      } finally {
        await sh(["ip", "netns", "del", outside]);
      }
    },
    T,
  );
});

if (!isRoot) console.warn("SKIP pods-agents: needs root");
