#!/usr/bin/env bun
/**
 * Figures for pods, as JSON:
 * - `autopod run` until the pod's command runs (its first connection arrives
 *   at a listener on the host), beside the same pod started by hand with
 *   ip + mount + nsenter + unshare, as a ratio (also by hand in a memory
 *   cgroup: on cgroup v1, joining one waits for an RCU grace period);
 * - 50 pods at once, and `autopod ps` with them;
 * - the agent's own memory (and CPU) when idle;
 * - the writable layer: overlay mount versus a private copy.
 * Usage (root): bun bench/pods.ts   (uses dist/autopod: run `bun build.ts` first)
 * RUNS=N sets the samples per figure (default 20), PODS=N the crowd (default 50).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIST } from "../test/_support.ts";
import { sh, testRootfs, TestHost } from "../test/_pods.ts";
import { median, round, summary } from "./_stats.ts";

const RUNS = Number(process.env.RUNS ?? 20);
const PODS = Number(process.env.PODS ?? 50);
const PORT = 9999;

if (process.getuid?.() !== 0) {
  console.error("bench/pods.ts needs root (namespaces, mounts, cgroups)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`bun build.ts\` first`);
  process.exit(1);
}

const now = () => performance.timeOrigin + performance.now();
/** The machine's load average (1, 5, 15 min): the figures' context on a shared machine. */
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
const loadAtStart = loadavg();
const rootfs = testRootfs();
const host = await TestHost.start("bench");
const work = mkdtempSync(join(tmpdir(), "autopod-bench-pods-"));

/** A listener in the host namespace that reports when each connection arrives. */
function startListener() {
  const script = `
    Bun.listen({ hostname: "0.0.0.0", port: ${PORT}, socket: {
      open(s) { process.stdout.write(String(performance.timeOrigin + performance.now()) + "\\n"); s.end(); },
      data() {},
    } });
    process.stdout.write("ready\\n");`;
  const proc = Bun.spawn(["nsenter", `--net=/run/netns/${host.netns}`, "--", process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let buf = "";
  const next = async (): Promise<string> => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("the listener ended");
      buf += new TextDecoder().decode(value);
    }
  };
  return { proc, next };
}

/** utime + stime of a process, in ticks of 10 ms. */
function agentCpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]);
}

async function must(argv: string[], stdin?: string) {
  const p = Bun.spawn(argv, { stdin: stdin === undefined ? "ignore" : new Blob([stdin]), stdout: "pipe", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")}: ${err}`);
}

const gateway = `${host.prefix}.1`;
const connectBack = ["/bin/busybox", "nc", "-w", "2", gateway, String(PORT)];

try {
  const listener = startListener();
  if ((await listener.next()) !== "ready") throw new Error("listener did not start");

  // 1. `autopod run` until the command runs, and 2. the same pod by hand: net namespace and veth,
  //    overlay, nsenter + unshare; once without a cgroup, once in a memory cgroup of its own as
  //    autopod does. The three take turns, so a change of the machine's load weighs on each alike.
  const viaAutopod: number[] = [];
  const cliWall: number[] = [];
  const viaAutopodOnce = async (i: number, isMeasured: boolean) => {
    const t0 = now();
    const r = await host.cli(["run", `b${i}`, "--rootfs", rootfs, "--", ...connectBack]);
    const t1 = now();
    if (r.exitCode !== 0) throw new Error(r.stderr);
    const arrived = Number(await listener.next());
    if (isMeasured) {
      viaAutopod.push(arrived - t0);
      cliWall.push(t1 - t0);
    }
    await host.cli(["rm", "-f", `b${i}`]);
  };

  const memoryRoot = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"].find((d) => existsSync(join(d, "cgroup.procs")))!;
  const byHandOnce = async (i: number, withCgroup: boolean, out: number[] | null) => {
    const ns = `apbench-${process.pid}-${i}`;
    const veth = `apbh${process.pid % 100000}${i}`.slice(0, 15);
    const d = join(work, `hand${i}`);
    const cgroup = join(memoryRoot, `apbench-${process.pid}-${i}`);
    const t0 = now();
    for (const sub of ["upper", "work", "root"]) mkdirSync(join(d, sub), { recursive: true });
    if (withCgroup) mkdirSync(cgroup);
    // The veth in the test host's namespace, where its bridge is, as the agent does it.
    // (`ip -n` works in a mount namespace of its own, so `netns add` must not go through it.)
    await must(["ip", "netns", "add", ns]);
    await must(
      ["ip", "-n", host.netns, "-batch", "-"],
      `link add ${veth} type veth peer name eth0 netns ${ns}\nlink set ${veth} master ${host.bridge}\nlink set ${veth} up\n`,
    );
    await must(
      ["ip", "-n", ns, "-batch", "-"],
      `link set lo up\naddr add ${host.prefix}.${200 + (i % 50)}/24 dev eth0\nlink set eth0 up\nroute add default via ${gateway}\n`,
    );
    await must(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${rootfs},upperdir=${d}/upper,workdir=${d}/work`, `${d}/root`]);
    const pod = Bun.spawn(
      [
        "nsenter",
        `--net=/run/netns/${ns}`,
        "--",
        "unshare",
        "--pid",
        "--mount",
        "--uts",
        "--ipc",
        "--fork",
        `--root=${d}/root`,
        "--mount-proc",
        "--",
        ...connectBack,
      ],
      { stdio: ["ignore", "ignore", "inherit"], ...(withCgroup ? { cgroup } : {}) },
    );
    const arrived = Number(await listener.next());
    out?.push(arrived - t0);
    await pod.exited;
    await sh(["umount", `${d}/root`]);
    await sh(["ip", "-n", host.netns, "link", "del", veth]);
    await sh(["ip", "netns", "del", ns]);
    if (withCgroup) await sh(["rmdir", cgroup]);
    rmSync(d, { recursive: true, force: true });
  };
  const handPlain: number[] = [];
  const handCgroup: number[] = [];
  // The agent's own CPU for a run and its rm: a figure the machine's load hardly changes (the by-hand pods never touch it).
  const agentTicks0 = agentCpuTicks(host.agent!.pid);
  for (let i = 0; i < RUNS + 2; i++) {
    const isMeasured = i >= 2;
    await viaAutopodOnce(i, isMeasured);
    await byHandOnce(i, false, isMeasured ? handPlain : null);
    await byHandOnce(i, true, isMeasured ? handCgroup : null);
  }
  const agentCpuMsPerRun = round(((agentCpuTicks(host.agent!.pid) - agentTicks0) * 10) / (RUNS + 2), 1);
  listener.proc.kill();

  // 3. The agent idle, then with a crowd of pods.
  const agentPid = host.agent!.pid;
  // RssFile is mostly the mapped executable: shared with every autopod process, and reclaimable.
  const memory = () => {
    const status = readFileSync(`/proc/${agentPid}/status`, "utf8");
    const mib = (key: string) => round(Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)![1]) / 1024, 1);
    return { rss_mib: mib("VmRSS"), anon_mib: mib("RssAnon"), file_mib: mib("RssFile") };
  };
  const cpuTicks = () => {
    const f = readFileSync(`/proc/${agentPid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return Number(rest[11]) + Number(rest[12]); // utime + stime
  };
  const idleCpu = async (seconds: number) => {
    const c0 = cpuTicks();
    await Bun.sleep(seconds * 1000);
    return round(((cpuTicks() - c0) / 100 / seconds) * 100, 2); // percent of one core (100 ticks/s)
  };
  // Idle means after the first status collection and past the agent's 5 s of sweeps after a pod changed (bench/idle.ts measures minutes).
  await host.cli(["status", "--from-agent", "--json"], 300_000);
  await Bun.sleep(6000);
  const idleNoPods = { ...memory(), cpu_percent: await idleCpu(10) };

  const t50 = now();
  for (let i = 0; i < PODS; i++) {
    const r = await host.cli(["run", `crowd${i}`, "--rootfs", rootfs, "--memory", "64m", "--", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    if (r.exitCode !== 0) throw new Error(r.stderr);
  }
  const startAllMs = now() - t50;
  const pods = await host.pods();
  const running = pods.filter((p) => p.state === "running").length;
  const ps: number[] = [];
  for (let i = 0; i < RUNS + 2; i++) {
    const t0 = now();
    const r = await host.cli(["ps"]);
    if (r.exitCode !== 0) throw new Error(r.stderr);
    if (i >= 2) ps.push(now() - t0);
  }
  const psJson: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = now();
    await host.cli(["ps", "--json"]);
    psJson.push(now() - t0);
  }
  await Bun.sleep(6000);
  const idleWithPods = { ...memory(), cpu_percent: await idleCpu(10) };
  const rmAll0 = now();
  await host.cli(["rm", "-f", ...pods.map((p) => p.name)]);
  const rmAllMs = now() - rmAll0;

  // 4. The writable layer: overlay mount (and unmount) versus cp -a --reflink=auto.
  const layer: Record<string, { files: number; overlay_ms: ReturnType<typeof summary>; copy_ms: ReturnType<typeof summary> }> = {};
  const trees: Record<string, string> = { test_rootfs: rootfs };
  const python = ["/usr/lib/python3.11", "/usr/lib/python3"].find((p) => existsSync(p));
  if (python) trees[python] = python;
  for (const [label, src] of Object.entries(trees)) {
    const overlay: number[] = [];
    const copy: number[] = [];
    for (let i = 0; i < 5; i++) {
      const d = join(work, `layer${i}`);
      for (const sub of ["upper", "work", "root"]) mkdirSync(join(d, sub), { recursive: true });
      let t0 = now();
      await must(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${src},upperdir=${d}/upper,workdir=${d}/work`, `${d}/root`]);
      await must(["umount", `${d}/root`]);
      overlay.push(now() - t0);
      t0 = now();
      await must(["cp", "-a", "--reflink=auto", "--", src, `${d}/copy`]);
      copy.push(now() - t0);
      rmSync(d, { recursive: true, force: true });
    }
    const files = Number((await sh(["sh", "-c", 'find "$1" | wc -l', "sh", src])).stdout.trim());
    layer[label] = { files, overlay_ms: summary(overlay), copy_ms: summary(copy) };
  }

  const run = summary(viaAutopod);
  const hand = summary(handPlain);
  // Where the agent's part of `run` goes: the "pod started" log line's milliseconds per step, median over the runs.
  const measured = new Set(Array.from({ length: RUNS }, (_, i) => `b${i + 2}`));
  const steps: Record<string, number[]> = {};
  for (const line of readFileSync(join(host.dir, "agent.log"), "utf8").split("\n")) {
    if (!line.includes('"pod started"')) continue;
    const e = JSON.parse(line) as { pod?: string; ms?: Record<string, number> };
    if (!e.pod || !measured.has(e.pod) || !e.ms) continue;
    for (const [k, v] of Object.entries(e.ms)) (steps[k] ??= []).push(v);
  }
  const runPhases = Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, round(median(v), 1)]));
  const handCg = summary(handCgroup);
  console.log(
    JSON.stringify(
      {
        bench: "pods",
        host: {
          kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(),
          cpus: navigator.hardwareConcurrency,
          loadavg_at_start: loadAtStart,
          loadavg_at_end: loadavg(),
        },
        binary: DIST,
        run_until_cmd_runs_ms: run,
        run_cli_wall_ms: summary(cliWall),
        run_agent_phases_median_ms: runPhases,
        agent_cpu_ms_per_run_and_rm: agentCpuMsPerRun,
        same_pod_by_hand_with_unshare_ms: hand,
        ratio_autopod_to_by_hand: round(run.median / hand.median, 2),
        same_pod_by_hand_in_a_memory_cgroup_ms: handCg,
        ratio_autopod_to_by_hand_in_a_memory_cgroup: round(run.median / handCg.median, 2),
        run_target_ms: 100,
        crowd: {
          pods: PODS,
          running,
          start_all_sequentially_ms: round(startAllMs, 0),
          ps_ms: summary(ps),
          ps_json_ms: summary(psJson),
          ps_target_ms: 100,
          rm_all_ms: round(rmAllMs, 0),
        },
        agent_idle: { no_pods: idleNoPods, [`with_${PODS}_pods`]: idleWithPods },
        layer,
      },
      null,
      2,
    ),
  );
} finally {
  await host.dispose();
  rmSync(work, { recursive: true, force: true });
}
