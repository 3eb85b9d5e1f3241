/**
 * Test hosts for pod tests: a network namespace acting as a host, with its own
 * agent (socket, state directory, bridge and 10.213.N.0/24 subnet). dispose()
 * removes everything the host and its pods made: pods, their namespaces,
 * veths and cgroups, the bridge (with the namespace), and the directories.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PodView } from "../src/pods/pod.ts";
import { agentKeyOf } from "../src/pods/runtime.ts";
import { autopod, autopodArgv, BUN, REPO, type CliResult } from "./_support.ts";

/** The test root file system (busybox), built when missing. */
export function testRootfs(): string {
  const dir = process.env.AUTOPOD_TEST_ROOTFS ?? join(REPO, ".cache/rootfs");
  if (!existsSync(join(dir, "bin/busybox"))) {
    const r = Bun.spawnSync(["bash", join(REPO, "scripts/make-test-rootfs.sh"), dir], { stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error(`scripts/make-test-rootfs.sh ${dir} failed`);
  }
  return dir;
}

/** Run a program and collect its output. */
export async function sh(argv: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { stdout, stderr, exitCode };
}

let hostCount = 0;

export class TestHost {
  readonly netns: string;
  readonly dir: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly configPath: string;
  readonly bridge: string;
  readonly subnet: string;
  /** The first three octets of the subnet, e.g. "10.213.147". */
  readonly prefix: string;
  agent: ReturnType<typeof Bun.spawn> | null = null;
  #agentLog = "";

  private constructor(tag: string, octet: number, nat: boolean, extraConfig: string[] = [], network: Record<string, string> = {}) {
    const id = `${tag}${process.pid % 10000}${hostCount++}`;
    this.netns = `aptest-${id}`;
    this.dir = mkdtempSync(join(tmpdir(), `autopod-${id}-`));
    this.stateDir = join(this.dir, "state");
    this.socket = join(this.dir, "agent.sock");
    this.configPath = join(this.dir, "autopod.toml");
    this.bridge = `apt${id}`.slice(0, 15);
    this.prefix = `10.213.${octet}`;
    this.subnet = `${this.prefix}.0/24`;
    writeFileSync(
      this.configPath,
      [
        `state_dir = "${this.stateDir}"`,
        `socket = "${this.socket}"`,
        "[network]",
        ...Object.entries({ bridge: this.bridge, subnet: this.subnet, ...network }).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
        `nat = ${nat}`,
        ...extraConfig,
      ].join("\n") + "\n",
    );
  }

  /** A new host namespace with an agent running in it. */
  static async start(tag: string, opts: { nat?: boolean; extraConfig?: string[]; network?: Record<string, string> } = {}): Promise<TestHost> {
    // Random third octets keep concurrent test runs on one machine apart.
    const octet = 100 + Math.floor(Math.random() * 150);
    const h = new TestHost(tag, octet, opts.nat ?? false, opts.extraConfig, opts.network);
    const r = await sh(["ip", "netns", "add", h.netns]);
    if (r.exitCode !== 0) throw new Error(`ip netns add ${h.netns}: ${r.stderr}`);
    await sh(["ip", "-n", h.netns, "link", "set", "lo", "up"]);
    await h.startAgent();
    return h;
  }

  get env(): Record<string, string> {
    return { AUTOPOD_CONFIG: this.configPath, AUTOPOD_SOCKET: this.socket };
  }

  /**
   * Start (or restart) this host's agent and wait until it answers; `binary` runs another autopod build, `env` adds to its
   * environment, `args` to its flags (e.g. --failpoints).
   */
  async startAgent(binary?: string, env: Record<string, string> = {}, args: string[] = []): Promise<void> {
    const logPath = join(this.dir, "agent.log");
    // nsenter without --fork execs the agent: its pid is the agent's.
    this.agent = Bun.spawn(
      ["nsenter", `--net=/run/netns/${this.netns}`, "--", ...(binary ? [binary] : autopodArgv()), "agent", "--config", this.configPath, ...args],
      {
        stdio: ["ignore", Bun.file(logPath), Bun.file(logPath)],
        env: { ...process.env, AUTOPOD_LOG_LEVEL: "debug", ...env },
      },
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await this.cli(["ps"]);
      if (r.exitCode === 0) return;
      if (this.agent.exitCode !== null || Date.now() > deadline) {
        this.#agentLog = existsSync(logPath) ? readFileSync(logPath, "utf8") : "";
        throw new Error(`The agent did not start: ${r.stderr}\n${this.#agentLog}`);
      }
      await Bun.sleep(50);
    }
  }

  /** Stop the agent with a signal and wait for it; pods keep running. */
  async killAgent(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    if (!this.agent) return;
    this.agent.kill(signal);
    await this.agent.exited;
    this.agent = null;
  }

  /** Run the CLI; throw with its message unless it succeeds. Returns trimmed stdout. */
  async ok(args: string[], timeoutMs = 120_000): Promise<string> {
    const r = await this.cli(args, timeoutMs);
    if (r.exitCode !== 0) throw new Error(`autopod ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Poll a pod's log (from byte `after`) until it matches; returns the match. */
  async waitForLog(pod: string, re: RegExp, after = 0, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = (await this.cli(["logs", pod])).stdout.slice(after);
      const m = re.exec(text);
      if (m) return m[0];
      if (Date.now() > deadline) throw new Error(`pod ${pod} never logged ${re}: ${text.slice(-500)}`);
      await Bun.sleep(100);
    }
  }

  cli(args: string[], timeoutMs?: number): Promise<CliResult> {
    return autopod(args, { env: this.env, timeoutMs });
  }

  /** Run a program in this host's network namespace. */
  inNet(argv: string[], timeoutMs?: number): Promise<CliResult> {
    return sh(["nsenter", `--net=/run/netns/${this.netns}`, "--", ...argv], { timeoutMs });
  }

  /** GET a URL from this host's network namespace (Bun's fetch in a child, so no curl or wget is needed). */
  fetchText(url: string): Promise<CliResult> {
    const script = "const r = await fetch(process.argv[1], { signal: AbortSignal.timeout(5000) }); process.stdout.write(await r.text());";
    return this.inNet([BUN, "-e", script, url]);
  }

  /** Start a pod; throws with the CLI's message when it fails. Returns the pod's row from ps --json. */
  async run(name: string, cmd: string[], opts: string[] = []): Promise<PodRow> {
    const r = await this.cli(["run", name, "--rootfs", testRootfs(), ...opts, "--", ...cmd]);
    if (r.exitCode !== 0) throw new Error(`autopod run ${name} failed (${r.exitCode}): ${r.stderr}`);
    return this.pod(name);
  }

  async pods(): Promise<PodRow[]> {
    const r = await this.cli(["ps", "--json"]);
    if (r.exitCode !== 0) throw new Error(`autopod ps failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as PodRow[];
  }

  async pod(name: string): Promise<PodRow> {
    const p = (await this.pods()).find((x) => x.name === name);
    if (!p) throw new Error(`No pod "${name}" in ps`);
    return p;
  }

  /** Poll ps until the pod's state matches. */
  async waitForState(name: string, re: RegExp, timeoutMs = 15_000): Promise<PodRow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = await this.pod(name);
      if (re.test(p.state)) return p;
      if (Date.now() > deadline) throw new Error(`Pod "${name}" stayed ${p.state}, expected ${re}`);
      await Bun.sleep(100);
    }
  }

  /** The names this agent gives host resources. */
  get agentKey(): string {
    return agentKeyOf(realpathSync(this.stateDir));
  }

  /** Net namespaces of this agent's pods that exist now. */
  podNetnses(): string[] {
    const prefix = `autopod-${this.agentKey}-`;
    return existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith(prefix)) : [];
  }

  /** Memory cgroups of this agent's pods that exist now. */
  podCgroups(): string[] {
    const dir = `/sys/fs/cgroup/memory/autopod/${this.agentKey}`;
    const v2 = `/sys/fs/cgroup/autopod/${this.agentKey}`;
    for (const d of [dir, v2])
      if (existsSync(d))
        return readdirSync(d, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => join(d, e.name));
    return [];
  }

  async dispose(): Promise<void> {
    try {
      if (this.agent) {
        const pods = await this.pods().catch(() => [] as PodRow[]);
        if (pods.length) await this.cli(["rm", "--force", ...pods.map((p) => p.name)]);
        await this.killAgent("SIGTERM");
      }
    } finally {
      // Whatever the agent could not remove (a failed test, a killed agent).
      if (existsSync(this.stateDir)) {
        for (const cg of this.podCgroups()) {
          for (const pid of readFileSync(join(cg, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
            try {
              process.kill(Number(pid), "SIGKILL");
            } catch {
              // gone already
            }
          }
        }
        for (const ns of this.podNetnses()) await sh(["ip", "netns", "del", ns]);
        for (const cg of this.podCgroups()) {
          for (let i = 0; i < 50 && existsSync(cg); i++) {
            await sh(["rmdir", cg]);
            if (existsSync(cg)) await Bun.sleep(20);
          }
        }
        for (const d of [`/sys/fs/cgroup/memory/autopod/${this.agentKey}`, `/sys/fs/cgroup/autopod/${this.agentKey}`])
          if (existsSync(d)) await sh(["rmdir", d]);
        const mounts = readFileSync("/proc/self/mountinfo", "utf8")
          .split("\n")
          .map((l) => l.split(" ")[4] ?? "")
          .filter((m) => m.startsWith(this.dir + "/"));
        for (const m of mounts.sort((a, b) => b.length - a.length)) await sh(["umount", "-l", m]);
      }
      await sh(["ip", "netns", "del", this.netns]);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A row of `autopod ps --json`. */
export type PodRow = PodView;
