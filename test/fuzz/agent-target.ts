/**
 * The full layer: an input goes to a real agent (`image import`, then for a
 * sample `restore`) on a TestHost. Oracles, after every input: the agent
 * still answers `ps`; a refusal exits non-zero with a message and no stack
 * trace; nothing changed outside the agent's state directory and the test's
 * own (a canary directory every escape in the mutations aims at, host paths a
 * pod would write through an escape, the host's mounts); no process of a
 * refused restore is left; the store still lists, gc's and verifies.
 */
import fs from "node:fs";
import path from "node:path";
import type { TestHost } from "../_pods.ts";
import type { Finding } from "./in-process.ts";
import { unclearMessage } from "./in-process.ts";
import { knownRowOfMessage } from "./known.ts";
import type { Rng } from "./rng.ts";
import { IMPORT_FLAGS } from "./trust.ts";

/** Host files a pod would write (it writes apfz-counter) if a mount escaped to the host. */
export const MUST_NOT_EXIST = ["/apfz-counter", "/tmp/apfz-counter", "/data/apfz-counter", "/restore.log", "/tmp/restore.log"];

/** A restore or import that takes longer has hung (they take about a second here; P1 in pending/ never ends). */
const RESTORE_TIMEOUT_MS = 60_000;

export interface HostSnapshot {
  canary: Record<string, string>;
  /** The kept local pods as ps shows them, and their files in the state directory. */
  localPods: Record<string, string>;
  present: string[];
  mounts: string[];
  hostDir: string[];
}

export type AgentOutcome = { imported: boolean; restore: "restored" | "refused" | "skipped"; findings: Finding[] };

export class AgentTarget {
  readonly host: TestHost;
  readonly scratch: string;
  readonly canary: string;
  /** Pods that exist before any input (they must be left alone). */
  readonly keep: Set<string>;
  #baseline!: HostSnapshot;
  #n = 0;
  #logAt = 0;
  #zombies = 0;
  #keptRows: Record<string, string> = {};

  constructor(host: TestHost, scratch: string, canary: string, keep: string[]) {
    this.host = host;
    this.scratch = scratch;
    this.canary = canary;
    this.keep = new Set(keep);
  }

  /** The canary directory, made fresh: what every escape in the dictionary aims at. */
  static makeCanary(dir: string): void {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, "dir"), { recursive: true });
    fs.writeFileSync(path.join(dir, "victim"), "the canary\n", { mode: 0o644 });
    fs.writeFileSync(path.join(dir, "victim.json"), "{}\n", { mode: 0o644 });
    fs.writeFileSync(path.join(dir, "dir", "file"), "inside\n", { mode: 0o600 });
  }

  snapshot(): HostSnapshot {
    return {
      canary: describeTree(this.canary),
      localPods: this.#localPods(),
      present: MUST_NOT_EXIST.filter((p) => fs.existsSync(p)),
      mounts: this.#mounts(),
      hostDir: fs.readdirSync(this.host.dir).sort(),
    };
  }

  #localPods(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of this.keep) {
      for (const [k, v] of Object.entries(describeTree(path.join(this.host.stateDir, "pods", name)))) out[`${name}/${k}`] = v;
    }
    return out;
  }

  /** Call once the agent is set up: later snapshots are compared with this one. */
  baseline(): void {
    this.#baseline = this.snapshot();
    this.#logAt = this.#agentLog().byteLength;
    this.#zombies = this.#agentZombies().length;
  }

  /** Exited children of the agent it has not reaped (it is a child subreaper: orphans of CRIU become its children). */
  #agentZombies(): string[] {
    const agent = this.host.agent?.pid;
    if (agent === undefined) return [];
    const out: string[] = [];
    for (const pid of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        const after = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (after[0] === "Z" && Number(after[1]) === agent) out.push(`${pid} (${stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))})`);
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }

  #agentLog(): Buffer {
    const p = path.join(this.host.dir, "agent.log");
    return fs.existsSync(p) ? fs.readFileSync(p) : Buffer.alloc(0);
  }

  /** What the agent logged since the last input: a JavaScript error inside a request is a bug, whatever the input. */
  #checkLog(f: (kind: string, message: string) => void): void {
    const log = this.#agentLog();
    const fresh = log.subarray(Math.min(this.#logAt, log.byteLength)).toString("utf8");
    this.#logAt = log.byteLength;
    for (const line of fresh.split("\n")) {
      if (
        /TypeError|RangeError|ReferenceError|SyntaxError|is not a function|Cannot read propert|undefined is not|Maximum call stack|[Uu]nhandled|uncaught/.test(
          line,
        )
      ) {
        f("agent-internal-error", `The agent logged: ${line.slice(0, 500)}`);
      }
    }
  }

  /** CRIU processes of this agent's restores that outlived them. */
  #strayCriu(): string[] {
    const out: string[] = [];
    for (const pid of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      try {
        if (fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "criu") continue;
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (cmd.includes(this.host.stateDir) || cmd.includes(fs.realpathSync(this.host.stateDir))) out.push(pid);
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }

  /** Mount points that are not another test's (they mount under their own /tmp dirs and /run/netns). */
  #mounts(): string[] {
    return fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m !== "" && !m.startsWith("/run/netns/") && (!m.startsWith("/tmp/") || m.startsWith(this.host.dir) || m.startsWith(this.scratch)))
      .sort();
  }

  async run(bytes: Uint8Array, rng: Rng, restoreIt: boolean): Promise<AgentOutcome> {
    const n = this.#n++;
    const findings: Finding[] = [];
    const f = (kind: string, message: string, knownRow?: number) => findings.push({ layer: "agent", kind, message, ...(knownRow ? { knownRow } : {}) });
    const file = path.join(this.scratch, `input-${n}.img`);
    fs.writeFileSync(file, bytes);
    const imp = await this.host.cli(["image", "import", file, ...IMPORT_FLAGS], RESTORE_TIMEOUT_MS);
    fs.rmSync(file, { force: true });
    let id: string | null = null;
    let restore: AgentOutcome["restore"] = "skipped";
    if (imp.exitCode === 0) id = imp.stdout.trim();
    else this.#checkRefusal("import", imp, f);
    if (id !== null && restoreIt) {
      const named = rng.chance(0.75);
      const args = named ? ["--name", `fz${n}`, "--ip", `${this.host.prefix}.${20 + (n % 200)}/24`] : [];
      const r = await this.host.cli(["restore", id, ...args], RESTORE_TIMEOUT_MS);
      restore = r.exitCode === 0 ? "restored" : "refused";
      if (r.exitCode !== 0) this.#checkRefusal("restore", r, f);
    }
    if (this.host.agent?.exitCode !== null) {
      f("agent-died", `The agent exited (${this.host.agent?.exitCode}) after this input`);
      await this.host.startAgent();
      this.#zombies = 0;
    }
    const ps = await this.host.cli(["ps", "--json"], 15_000);
    if (ps.exitCode !== 0) f("agent-unresponsive", `ps failed after this input (${ps.exitCode}): ${ps.stderr.slice(0, 300)}`);
    await this.#cleanUp(id, f);
    const stray = this.#strayCriu();
    if (stray.length) f("leftover-processes", `CRIU processes ${stray.join(",")} of this agent are still running after the input`);
    this.#checkLog(f);
    // The agent reaps orphans on its poll (a zombie seen in two sweeps, 250 ms apart): give it a few.
    let zombies = this.#agentZombies();
    for (const until = Date.now() + 2000; zombies.length > this.#zombies && Date.now() < until; zombies = this.#agentZombies()) await Bun.sleep(100);
    if (zombies.length > this.#zombies)
      f("zombie-leak", `The agent left ${zombies.length - this.#zombies} exited children unreaped (${zombies.length} in all: ${zombies.slice(-3).join(", ")})`);
    this.#zombies = zombies.length;
    this.#compare(f);
    return { imported: id !== null, restore, findings };
  }

  #checkRefusal(what: string, r: { exitCode: number; stderr: string }, f: (kind: string, message: string, row?: number) => void): void {
    const msg = r.stderr.trim();
    if (r.exitCode >= 128 || r.exitCode < 0) f("hang-or-crash", `${what} ended with status ${r.exitCode}: ${msg.slice(0, 300)}`);
    else if (unclearMessage(msg)) f("unclear-error", `${what} failed without a clear message: ${JSON.stringify(msg.slice(0, 400))}`);
    const row = knownRowOfMessage(msg);
    if (row !== undefined) f("known-refusal", `${what}: ${msg.slice(0, 200)}`, row);
  }

  /** Remove what the input made (pods, the image), then check nothing of a refused restore runs on. */
  async #cleanUp(id: string | null, f: (kind: string, message: string) => void): Promise<void> {
    const pods = await this.host.pods().catch(() => []);
    const extra = pods.filter((p) => !this.keep.has(p.name)).map((p) => p.name);
    if (extra.length) {
      const r = await this.host.cli(["rm", "--force", ...extra], 60_000);
      if (r.exitCode !== 0) f("cleanup-failed", `rm --force ${extra.join(" ")}: ${r.stderr.slice(0, 300)}`);
    }
    for (const p of pods.filter((p) => this.keep.has(p.name))) {
      const row = JSON.stringify({ state: p.state, address: p.address, rootfs: p.rootfs, cmd: p.cmd });
      this.#keptRows[p.name] ??= row;
      if (row !== this.#keptRows[p.name]) f("local-pod-changed", `Local pod "${p.name}" changed: ${this.#keptRows[p.name]} -> ${row}`);
    }
    for (const name of this.keep) if (!pods.some((p) => p.name === name)) f("local-pod-changed", `Local pod "${name}" is gone`);
    const keepCg = new Set([...this.keep].map((k) => path.basename(k)));
    for (const cg of this.host.podCgroups()) {
      if (keepCg.has(path.basename(cg))) continue;
      const procs = fs.existsSync(path.join(cg, "cgroup.procs")) ? fs.readFileSync(path.join(cg, "cgroup.procs"), "utf8").trim() : "";
      if (procs) {
        f("leftover-processes", `Processes ${procs.split("\n").join(",")} are left in ${cg} after the pods were removed`);
        for (const pid of procs.split("\n")) {
          try {
            process.kill(Number(pid), "SIGKILL");
          } catch {
            // gone
          }
        }
      }
    }
    if (id !== null) {
      const r = await this.host.cli(["image", "rm", id]);
      if (r.exitCode !== 0 && !/in use|used by/i.test(r.stderr)) f("image-rm-failed", `image rm ${id}: ${r.stderr.slice(0, 300)}`);
    }
    if (this.#n % 8 === 0) {
      const gc = await this.host.cli(["image", "gc", "--json"], 60_000);
      if (gc.exitCode !== 0) f("gc-failed", `image gc: ${gc.stderr.slice(0, 300)}`);
      const ls = await this.host.cli(["images", "--json"], 30_000);
      if (ls.exitCode !== 0) f("images-failed", `images: ${ls.stderr.slice(0, 300)}`);
    }
  }

  /** Compare the host with the baseline; put it back so the next input is judged on its own. */
  #compare(f: (kind: string, message: string) => void): void {
    const now = this.snapshot();
    const b = this.#baseline;
    const local = diffRecords(b.localPods, now.localPods);
    if (local.length) {
      f("local-pod-changed", `Files of a local pod changed: ${local.slice(0, 5).join("; ")}`);
      b.localPods = now.localPods;
    }
    const changed = diffRecords(b.canary, now.canary);
    if (changed.length) {
      f("host-changed", `The canary directory changed: ${changed.slice(0, 5).join("; ")}`);
      AgentTarget.makeCanary(this.canary);
    }
    for (const p of now.present.filter((p) => !b.present.includes(p))) {
      f("host-changed", `${p} was created on the host`);
      fs.rmSync(p, { force: true });
    }
    const newMounts = now.mounts.filter((m) => !b.mounts.includes(m));
    if (newMounts.length) f("mount-leak", `Mounts left on the host: ${newMounts.slice(0, 5).join(", ")}`);
    const newFiles = now.hostDir.filter((x) => !b.hostDir.includes(x));
    if (newFiles.length) f("host-changed", `New files beside the agent's state: ${newFiles.join(", ")}`);
  }
}

export function diffRecords(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) if (a[k] !== b[k]) out.push(`${k}: ${a[k] ?? "(none)"} -> ${b[k] ?? "(none)"}`);
  return out;
}

/** Type, mode, owner, size, content hash and link target of every path under root (links never followed). */
export function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (abs: string, rel: string) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      return;
    }
    const what = st.isSymbolicLink()
      ? `link ${fs.readlinkSync(abs)}`
      : st.isDirectory()
        ? "dir"
        : st.isFile()
          ? `file ${st.size} ${Bun.hash(fs.readFileSync(abs)).toString(16)}`
          : "special";
    out[rel] = `${what} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n), `${rel}/${n}`);
  };
  walk(root, ".");
  return out;
}
