/**
 * Test clusters: N hosts (network namespaces, each with its own agent, state
 * directory, socket and pod subnet, see TestHost) with an uplink each on one
 * LAN bridge in the root namespace, plus a client namespace on the LAN that
 * talks to hosts and pods as a machine on the LAN would. Each uplink can be
 * shaped (tc tbf). dispose() removes everything, also after a failed test.
 * LAN addresses: 10.213.L.0/24 with L random in 10..99 (TestHost pod
 * subnets use 100..249), hosts from .10, the client at .250.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN } from "./_support.ts";
import { sh, TestHost } from "./_pods.ts";

let lanCount = 0;

export class TestCluster {
  readonly hosts: TestHost[] = [];
  readonly bridge: string;
  readonly client: string;
  readonly prefix: string;
  readonly dir: string;
  #uplinks: string[] = [];

  private constructor(readonly tag: string) {
    const id = `${tag}${process.pid % 10000}${lanCount++}`;
    this.bridge = `apl${id}`.slice(0, 15);
    this.client = `aptest-cl-${id}`;
    this.prefix = `10.213.${10 + Math.floor(Math.random() * 90)}`;
    this.dir = mkdtempSync(join(tmpdir(), `autopod-lan-${id}-`));
  }

  /** A LAN with `names.length` hosts, each running an agent whose peer API listens on its LAN address. */
  static async start(tag: string, names: string[], opts: { routed?: boolean } = {}): Promise<TestCluster> {
    const c = new TestCluster(tag);
    try {
      await must(["ip", "link", "add", c.bridge, "type", "bridge"]);
      await must(["ip", "link", "set", c.bridge, "up"]);
      await must(["ip", "netns", "add", c.client]);
      await must(["ip", "-n", c.client, "link", "set", "lo", "up"]);
      await c.#uplink(c.client, `${c.prefix}.250`);
      for (const [i, name] of names.entries()) {
        // Routed: one pod subnet for the whole cluster, in the LAN's own /24.
        const network: Record<string, string> = opts.routed ? { mode: "routed", subnet: c.podSubnet, lan_interface: "lan0" } : {};
        const h = await TestHost.start(name, { extraConfig: ["[peer]", `listen = "${c.prefix}.${10 + i}:7443"`], network });
        c.hosts.push(h);
        await c.#uplink(h.netns, c.addressOf(i));
      }
    } catch (e) {
      await c.dispose();
      throw e;
    }
    return c;
  }

  /** The routed pod subnet (start's `routed`): .128 to .191 of the LAN, which nothing else uses. */
  get podSubnet(): string {
    return `${this.prefix}.128/26`;
  }

  addressOf(i: number): string {
    return `${this.prefix}.${10 + i}`;
  }

  urlOf(i: number): string {
    return `https://${this.addressOf(i)}:7443`;
  }

  /** Shape host i's uplink to `rate` (e.g. "1gbit") in both directions. */
  async shape(i: number, rate: string): Promise<void> {
    const v = this.#uplinks[i + 1]!;
    await must(["tc", "qdisc", "replace", "dev", v, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"]);
    await must([
      "ip",
      "netns",
      "exec",
      this.hosts[i]!.netns,
      "tc",
      "qdisc",
      "replace",
      "dev",
      "lan0",
      "root",
      "tbf",
      "rate",
      rate,
      "burst",
      "256kb",
      "latency",
      "50ms",
    ]);
  }

  /** Cut or restore host i's uplink. */
  async link(i: number, up: boolean): Promise<void> {
    await must(["ip", "link", "set", this.#uplinks[i + 1]!, up ? "up" : "down"]);
  }

  /**
   * From the client namespace, GET `url` over TLS with the given PEM files
   * (any may be absent). Returns "STATUS BODY", or "refused: MESSAGE".
   */
  async clientGet(url: string, pem: { ca?: string; cert?: string; key?: string }, method = "GET", body?: string): Promise<string> {
    const files: Record<string, string> = {};
    for (const [k, v] of Object.entries(pem) as Array<[string, string | undefined]>) {
      if (v === undefined) continue;
      const p = join(this.dir, `${k}-${Math.random().toString(36).slice(2)}.pem`);
      writeFileSync(p, v, { mode: 0o600 });
      files[k] = p;
    }
    const script = `
      const [url, method, files] = [process.argv[1], process.argv[2], JSON.parse(process.argv[3])];
      const body = files.body ? await Bun.file(files.body).text() : undefined;
      const tls = { rejectUnauthorized: !!files.ca, checkServerIdentity: () => undefined };
      for (const k of ["ca", "cert", "key"]) if (files[k]) tls[k] = await Bun.file(files[k]).text();
      try {
        const r = await fetch(url, { method, tls, keepalive: false, body, signal: AbortSignal.timeout(5000) });
        process.stdout.write(r.status + " " + (await r.text()));
      } catch (e) { process.stdout.write("refused: " + e.message); }`;
    if (body !== undefined) {
      files.body = join(this.dir, `body-${Math.random().toString(36).slice(2)}`);
      writeFileSync(files.body, body);
    }
    const r = await sh(["nsenter", `--net=/run/netns/${this.client}`, "--", BUN, "-e", script, url, method, JSON.stringify(files)]);
    return r.stdout.trim() || `error: ${r.stderr.trim()}`;
  }

  /**
   * Make the hosts one cluster named `name`: host 0 holds the CA, every other
   * host joins with a bundle from it, and every host knows every other as a
   * peer under the name it was started with.
   */
  async formCluster(name: string, names: readonly string[]): Promise<void> {
    const [first, ...rest] = this.hosts;
    await first!.ok(["cluster", "init", "--name", name, "--host", names[0]!, "--address", this.addressOf(0)]);
    for (const [k, h] of rest.entries()) {
      const i = k + 1;
      const bundle = join(this.dir, `${names[i]}.bundle`);
      await first!.ok(["cluster", "add-host", names[i]!, "--address", this.addressOf(i), "--out", bundle]);
      await h.ok(["cluster", "join", bundle]);
    }
    for (const [i, h] of this.hosts.entries()) for (const [j] of this.hosts.entries()) if (i !== j) await h.ok(["peer", "add", names[j]!, this.urlOf(j)]);
  }

  async dispose(): Promise<void> {
    for (const h of this.hosts) await h.dispose().catch(() => {});
    await sh(["ip", "netns", "del", this.client]);
    for (const v of this.#uplinks) await sh(["ip", "link", "del", v]);
    await sh(["ip", "link", "del", this.bridge]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A veth from the LAN bridge into `netns`, as lan0 with `address`/24. */
  async #uplink(netns: string, address: string): Promise<void> {
    const v = `${this.bridge.slice(0, 10)}u${this.#uplinks.length}`.slice(0, 15);
    await must(["ip", "link", "add", v, "type", "veth", "peer", "name", "lan0", "netns", netns]);
    this.#uplinks.push(v);
    await must(["ip", "link", "set", v, "master", this.bridge, "up"]);
    await must(["ip", "-n", netns, "addr", "add", `${address}/24`, "dev", "lan0"]);
    await must(["ip", "-n", netns, "link", "set", "lan0", "up"]);
  }
}

async function must(argv: string[]): Promise<void> {
  const r = await sh(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.trim()}`);
}
