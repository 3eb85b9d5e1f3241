/**
 * A real etcd cluster for tests: Debian's etcd (package etcd-server), three
 * members, each in its own network namespace on a bridge of its own, with
 * addresses in 10.213.N.0/24 (N random in 250..254, apart from TestHost's
 * 100..249 and TestCluster's 10..99). The test namespace reaches them through
 * the bridge's address (.1). dispose() kills the members and removes the
 * namespaces, the bridge and the data directories.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sh } from "./_pods.ts";

export const ETCD = "/usr/bin/etcd";

let clusters = 0;

export class EtcdTestCluster {
  readonly prefix = `10.213.${250 + Math.floor(Math.random() * 5)}`;
  readonly tag = `${process.pid % 10000}${clusters++}`;
  readonly bridge = `apetcd${this.tag}`.slice(0, 15);
  readonly dir = mkdtempSync(join(tmpdir(), "autopod-etcd-"));
  readonly members: { name: string; netns: string; ip: string; proc: ReturnType<typeof Bun.spawn> | null }[] = [];

  /** Client URLs, one per member. */
  get endpoints(): string[] {
    return this.members.map((m) => `http://${m.ip}:2379`);
  }

  static async start(size = 3): Promise<EtcdTestCluster> {
    if (!existsSync(ETCD)) throw new Error(`${ETCD} is missing: install Debian's etcd-server (scripts/test.sh does)`);
    const c = new EtcdTestCluster();
    try {
      await c.#network(size);
      const initial = c.members.map((m) => `${m.name}=http://${m.ip}:2380`).join(",");
      for (const m of c.members) {
        m.proc = Bun.spawn(
          [
            "nsenter",
            `--net=/run/netns/${m.netns}`,
            "--",
            ETCD,
            "--name",
            m.name,
            "--data-dir",
            join(c.dir, m.name),
            "--listen-client-urls",
            `http://${m.ip}:2379`,
            "--advertise-client-urls",
            `http://${m.ip}:2379`,
            "--listen-peer-urls",
            `http://${m.ip}:2380`,
            "--initial-advertise-peer-urls",
            `http://${m.ip}:2380`,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            `autopod-test-${c.tag}`,
          ],
          { stdio: ["ignore", Bun.file(join(c.dir, `${m.name}.log`)), Bun.file(join(c.dir, `${m.name}.log`))] },
        );
      }
      await c.waitHealthy();
      return c;
    } catch (e) {
      await c.dispose();
      throw e;
    }
  }

  async #network(size: number): Promise<void> {
    const must = async (argv: string[]) => {
      const r = await sh(argv);
      if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
    };
    await must(["ip", "link", "add", this.bridge, "type", "bridge"]);
    await must(["ip", "addr", "add", `${this.prefix}.1/24`, "dev", this.bridge]);
    await must(["ip", "link", "set", this.bridge, "up"]);
    for (let i = 0; i < size; i++) {
      const m = { name: `m${i}`, netns: `apetcd-${this.tag}-${i}`, ip: `${this.prefix}.${10 + i}`, proc: null };
      this.members.push(m);
      const host = `ape${this.tag}h${i}`.slice(0, 15);
      await must(["ip", "netns", "add", m.netns]);
      await must(["ip", "-n", m.netns, "link", "set", "lo", "up"]);
      await must(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", m.netns]);
      await must(["ip", "link", "set", host, "master", this.bridge, "up"]);
      await must(["ip", "-n", m.netns, "addr", "add", `${m.ip}/24`, "dev", "eth0"]);
      await must(["ip", "-n", m.netns, "link", "set", "eth0", "up"]);
    }
  }

  /** Give a test host's namespace a leg on the etcd bridge, with address .(50 + n). */
  async connect(netns: string, n: number): Promise<void> {
    const outside = `ape${this.tag}c${n}`.slice(0, 15);
    for (const argv of [
      ["ip", "link", "add", outside, "type", "veth", "peer", "name", "etcd0", "netns", netns],
      ["ip", "link", "set", outside, "master", this.bridge, "up"],
      ["ip", "-n", netns, "addr", "add", `${this.prefix}.${50 + n}/24`, "dev", "etcd0"],
      ["ip", "-n", netns, "link", "set", "etcd0", "up"],
    ]) {
      const r = await sh(argv);
      if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
    }
  }

  /** Wait until every running member says it is healthy. */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.members) {
      if (!m.proc) continue;
      for (;;) {
        const ok = await fetch(`http://${m.ip}:2379/health`, { signal: AbortSignal.timeout(2000) })
          .then(async (r) => r.ok && ((await r.json()) as { health?: string }).health === "true")
          .catch(() => false);
        if (ok) break;
        if (m.proc.exitCode !== null) throw new Error(`etcd member ${m.name} exited ${m.proc.exitCode} (log: ${join(this.dir, `${m.name}.log`)})`);
        if (Date.now() > deadline) throw new Error(`etcd member ${m.name} never became healthy`);
        await Bun.sleep(200);
      }
    }
  }

  /** SIGKILL one member, as a host that dies. */
  async kill(i: number): Promise<void> {
    const m = this.members[i]!;
    m.proc?.kill("SIGKILL");
    await m.proc?.exited;
    m.proc = null;
  }

  async dispose(): Promise<void> {
    for (const m of this.members) {
      m.proc?.kill("SIGKILL");
      await m.proc?.exited;
      await sh(["ip", "netns", "del", m.netns]);
    }
    await sh(["ip", "link", "del", this.bridge]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
