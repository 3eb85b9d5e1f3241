#!/usr/bin/env bun
/**
 * Checkpoint and restore figures, as JSON on stdout, measured in one run:
 *   node_modules/.bin/bun bench/checkpoint.ts [--mib 1024] [--runs 3] [--restore-only] [--no-native-hash]
 * (--restore-only: the stop-checkpoint and restore part alone, with its floor;
 * no --leave-running, hashed dumps, export or import)
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first).
 *
 * A test host (a net namespace with its own agent and state directory) runs
 * pods of `memhog MIB` (MIB MiB of random bytes). On the same pod, to the same
 * disk (the agent's state directory):
 * - raw `criu dump --leave-running`, with the agent's own flags (dumpArgv:
 *   external net namespace, external mounts, TCP, network lock), against
 *   `autopod checkpoint` (stop, and --leave-running), as ratios. A raw dump
 *   leaves its 1 GiB dirty in the page cache; autopod's commit is durable
 *   (fsync), so the raw dump is also timed with an fsync of its files;
 * - raw `criu restore` of that raw dump, into a root, net namespace and
 *   external mounts made by hand like the agent's, against `autopod restore`;
 * - the freeze of --leave-running; hashing throughput; the bytes a second
 *   checkpoint stores after 1% of memory changed (SIGUSR1); export and import
 *   throughput (import into a second, empty agent).
 * - the floor: a raw dump whose pages are hashed as CRIU writes them and
 *   written behind, then fsynced; a raw restore while its pages are hashed
 *   (on all threads but one, as a restore does).
 *   A checkpoint must hash every page and be durable before it prints the
 *   image id, and a restore must check every page before the pod runs: that
 *   much of a ratio is the machine's, the rest autopod's bookkeeping.
 * Every phase figure (dumpMs, captureMs, materializeMs, criuMs) is the
 * agent's own report. Everything made is removed at the end.
 */
import { Database } from "bun:sqlite";
import {
  appendFileSync,
  closeSync,
  existsSync,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import type { CheckpointResult } from "../src/checkpoint/checkpointer.ts";
import { PageTail } from "../src/checkpoint/page-tail.ts";
import { dumpArgv, restoreArgv } from "../src/platform/linux/criu-runner.ts";
import { criuVersion } from "../src/platform/linux/criu.ts";
import { findCriu } from "../src/platform/linux/criu-choose.ts";
import { memoryHierarchy } from "../src/platform/linux/cgroup.ts";
import { reapIfExited, setChildSubreaper } from "../src/platform/linux/libc.ts";
import { killPod, waitGone } from "../src/platform/linux/pod-procs.ts";
import { externalMountsOf, type PodRecord } from "../src/pods/pod.ts";
import { ChunkWorkers } from "../src/store/chunk-workers.ts";
import { nativeHashing } from "../src/store/sha256x16.ts";
import { sha256 } from "../src/image/hash.ts";
import { DIST } from "../test/_support.ts";
import { sh, testRootfs, TestHost } from "../test/_pods.ts";
import { round, summary } from "./_stats.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MIB = Number(arg("mib", "1024"));
const RUNS = Math.max(1, Number(arg("runs", "3")));
const isRestoreOnly = args.includes("--restore-only");
/** --no-native-hash: the agent hashes with Bun's SHA-256 alone (store.native_hash = false), to compare. */
const isNativeOff = args.includes("--no-native-hash");

if (process.getuid?.() !== 0) {
  console.error("bench/checkpoint.ts needs root (namespaces, mounts, CRIU)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`node_modules/.bin/bun build.ts\` first`);
  process.exit(1);
}
const CRIU = findCriu();
if (!CRIU) {
  console.error("CRIU is not installed (scripts/install-criu.sh)");
  process.exit(1);
}
// Trees restored by hand with `criu restore -d` become ours to reap.
setChildSubreaper();

testRootfs(); // built when missing
const mbps = (bytes: number, ms: number) => Math.round(bytes / 1e6 / (ms / 1000));
const log = (s: string) => console.error(`[bench/checkpoint] ${s}`);

let host = null as TestHost | null;
let other = null as TestHost | null;
const work = mkdtempSync(join(tmpdir(), "autopod-bench-ckpt-"));
/** Cleanups for what the bench makes by hand (raw restores), newest first. */
const undo: Array<() => Promise<void>> = [];

async function ok(h: TestHost, a: string[]): Promise<{ out: string; ms: number; stealMs: number }> {
  const s = stealMs();
  const t = performance.now();
  const r = await h.cli(a, 600_000);
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`autopod ${a.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
  return { out: r.stdout.trim(), ms, stealMs: stealMs() - s };
}

async function logs(h: TestHost, pod: string): Promise<string> {
  return (await h.cli(["logs", pod])).stdout;
}

async function waitForLog(h: TestHost, pod: string, re: RegExp, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await logs(h, pod);
    const m = out.match(re);
    if (m) return m[0];
    if (Date.now() > deadline) throw new Error(`pod ${pod} never logged ${re}: ${out}`);
    await Bun.sleep(100);
  }
}

/** memhog's checksum of its memory: SIGUSR2, then the newest "sum" line. */
async function checksum(h: TestHost, pod: string): Promise<string> {
  const before = (await logs(h, pod)).split("\n").filter((l) => l.startsWith("sum ")).length;
  process.kill((await h.pod(pod)).pid!, "SIGUSR2");
  const deadline = Date.now() + 60_000;
  for (;;) {
    const sums = (await logs(h, pod)).split("\n").filter((l) => l.startsWith("sum "));
    if (sums.length > before) return sums[sums.length - 1]!;
    if (Date.now() > deadline) throw new Error(`pod ${pod} printed no checksum`);
    await Bun.sleep(100);
  }
}

/** The agent's record of a pod (its runtime: mounts, layer, net namespace). */
function record(h: TestHost, pod: string): PodRecord {
  const db = new Database(join(h.stateDir, "autopod.db"), { readonly: true });
  try {
    const row = db.query<{ record: string }, [string]>("SELECT record FROM pods WHERE name = ?").get(pod);
    if (!row) throw new Error(`no record of pod ${pod}`);
    return JSON.parse(row.record) as PodRecord;
  } finally {
    db.close();
  }
}

function fsyncTree(dir: string): void {
  for (const name of readdirSync(dir)) {
    const fd = openSync(join(dir, name), "r");
    try {
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const fd = openSync(dir, "r");
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/**
 * `criu dump --leave-running` of a running pod by hand, with the agent's flags,
 * into the agent's state directory (the store's disk). Then the same dump made
 * durable (fdatasync of its files), timed apart, so no dirty page cache spills
 * into the next measurement.
 *
 * With `hashed`, the least a durable checkpoint that hashes every page must do
 * on top of the dump, with autopod's own code and nothing else (no store, no
 * index, no manifest): CRIU's page images hashed and written behind as CRIU
 * writes them (PageTail, as a stop-checkpoint does), the rest hashed once CRIU
 * exits, then every file fsynced. `hashedMs` is from the start of the dump to
 * the last hash, `syncMs` after.
 */
async function rawDump(h: TestHost, pod: string, dir: string, hashed = false): Promise<{ dumpMs: number; syncMs: number; bytes: number; hashedMs: number }> {
  const p = await h.pod(pod);
  const rec = record(h, pod);
  const netnsInode = statSync(`/proc/${p.pid}/ns/net`).ino;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const argv = dumpArgv({ criu: CRIU!, pid: p.pid!, imagesDir: dir, netnsInode, externalMounts: externalMountsOf(rec.runtime), leave: "running" });
  // The same PageTail a stop-checkpoint uses: hashing and write-behind as CRIU writes.
  const tail = hashed ? new PageTail(dir, { workers }) : null;
  const t = performance.now();
  const r = await sh(argv, { timeoutMs: 600_000 });
  const dumpMs = performance.now() - t;
  if (r.exitCode !== 0) tail?.abort();
  else if (tail) await Promise.all(tail.finish().values());
  const hashedMs = performance.now() - t;
  if (r.exitCode !== 0)
    throw new Error(
      `raw criu dump failed (${r.exitCode}): ${r.stderr}\n${readFileSync(join(dir, "dump.log"), "utf8")
        .split("\n")
        .filter((l) => l.includes("Error"))
        .join("\n")}`,
    );
  const t2 = performance.now();
  fsyncTree(dir);
  return { dumpMs, syncMs: performance.now() - t2, bytes: dirBytes(dir), hashedMs };
}

/**
 * CPU time of a process and its reaped children (utime, stime, cutime, cstime of /proc/PID/stat), in ms:
 * what a restore costs the machine, which load from others changes far less than its wall time.
 * A restored tree is reaped later, so its own CPU is not counted (in either kind of restore).
 */
function cpuMsOf(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 of stat(5), counted from 1, are 11-14 here, after pid and comm.
  return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100;
}

/** CPU time the hypervisor gave to others while this machine wanted it: a run with much of it was disturbed. */
function stealMs(): number {
  return (cpuStat()[7]! * 1000) / 100;
}

function cpuStat(): number[] {
  return readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
}

/** SHA-256 of 4 KiB pages: Bun's on one thread, and a page file as checkpoints hash it (ChunkWorkers) on one thread and on every core. */
async function hashThroughput(bytes: number): Promise<Record<string, number | boolean | string | undefined>> {
  const buf = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(buf.subarray(i, i + 65536));
  let t = performance.now();
  for (let o = 0; o < bytes; o += 4096) sha256(buf.subarray(o, o + 4096));
  const one = mbps(bytes, performance.now() - t);
  const file = join(work, "pages-hash.img");
  writeFileSync(file, buf);
  const pool = new ChunkWorkers();
  await pool.hashFile(file, 4096); // threads up, file cached
  t = performance.now();
  await pool.hashFile(file, 4096);
  const all = mbps(bytes, performance.now() - t);
  const single = new ChunkWorkers(1);
  await single.hashFile(file, 4096);
  t = performance.now();
  await single.hashFile(file, 4096);
  const oneThread = mbps(bytes, performance.now() - t);
  single.close();
  pool.close();
  rmSync(file);
  return {
    /** Bun's SHA-256 of 4 KiB pages in memory, one thread. */
    pageSha256OneThreadMBps: one,
    /** A page file hashed as checkpoints do (ChunkWorkers: 16 pages at a time when native), one thread and all. */
    pageFileOneThreadMBps: oneThread,
    pageFileAllThreadsMBps: all,
    threads: pool.threads,
    native16Lane: pool.isNative,
    /** How the native SHA-256 hashes 16 pages: "avx512" (16 lanes) or "sha-ni" (four interleaved); absent when it is not used. */
    nativeWay: pool.isNative ? nativeHashing().way : undefined,
  };
}

/** The run of median wall time (the lower middle one of an even count). */
function medianRun<T extends { ms: number }>(runs: T[]): T {
  return [...runs].sort((a, b) => a.ms - b.ms)[Math.floor((runs.length - 1) / 2)]!;
}

function runSummary(r: { out: string; ms: number; stealMs: number }): { cliMs: number; stealMs: number; phases: Record<string, number> } {
  return { cliMs: round(r.ms, 1), stealMs: r.stealMs, phases: (JSON.parse(r.out) as { phases: Record<string, number> }).phases };
}

/** Hashing threads for the floor's raw runs (as many as the agent's). */
const workers = new ChunkWorkers();

let rawSeq = 0;

/**
 * `criu restore -d` of a raw dump by hand, as the agent restores: the pod's
 * layer (copied) over its base as an overlay root, a fresh net namespace passed
 * with --inherit-fd, the external mounts mapped. Returns CRIU's wall time, and
 * removes the restored tree and what was made for it. With `verified`, every
 * page image of the dump is hashed (on all threads but one, as a restore's
 * check does: CRIU keeps a core) while CRIU restores from it, as autopod checks
 * them; `ms` then ends when both are done.
 */
async function rawRestore(rec: PodRecord, dumpDir: string, verified = false): Promise<{ ms: number; cpuMs: number }> {
  const n = rawSeq++;
  const base = join(work, `raw-root-${n}`);
  const upper = join(base, "upper");
  const root = join(base, "root");
  mkdirSync(join(base, "work"), { recursive: true });
  mkdirSync(root);
  const cp = await sh(["cp", "-a", join(rec.runtime.layerDir, "upper"), upper]);
  if (cp.exitCode !== 0) throw new Error(`cp: ${cp.stderr}`);
  const m = await sh(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${rec.spec.rootfs},upperdir=${upper},workdir=${join(base, "work")}`, root]);
  if (m.exitCode !== 0) throw new Error(`mount overlay: ${m.stderr}`);
  const ns = `apbench-raw-${process.pid % 10000}-${n}`;
  await sh(["ip", "netns", "add", ns]);
  // Like the agent: CRIU runs in a memory cgroup of its own and leaves cgroups alone.
  const cg = join(memoryHierarchy()?.mountpoint ?? "/sys/fs/cgroup/memory", ns);
  mkdirSync(cg, { recursive: true });
  const cleanup = async (pid: number | null) => {
    if (pid !== null) {
      killPod(pid);
      await waitGone(pid, 10_000);
      reapIfExited(pid);
    }
    await sh(["umount", "-l", root]);
    await sh(["ip", "netns", "del", ns]);
    for (let i = 0; i < 100 && existsSync(cg); i++) {
      await sh(["rmdir", cg]);
      if (existsSync(cg)) await Bun.sleep(20);
    }
    rmSync(base, { recursive: true, force: true });
  };
  let pid: number | null = null;
  undo.push(() => cleanup(pid));
  const pidFile = join(dumpDir, `raw-restore-${n}.pid`);
  rmSync(pidFile, { force: true });
  const fd = openSync(`/run/netns/${ns}`, "r");
  try {
    const argv = restoreArgv(
      {
        criu: CRIU!,
        imagesDir: dumpDir,
        root,
        netnsPath: `/run/netns/${ns}`,
        externalMounts: externalMountsOf(rec.runtime),
        tcpEstablished: false,
        cgroup: cg,
      },
      3,
      pidFile,
      `raw-restore-${n}.log`,
    );
    argv.unshift("sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', cg);
    const t = performance.now();
    const cpu0 = cpuMsOf("self");
    const checks = verified
      ? readdirSync(dumpDir)
          .filter((f) => /^pages-\d+\.img$/.test(f))
          .map((f) => workers.hashFile(join(dumpDir, f), 4096, Math.max(1, workers.threads - 1)))
      : [];
    const proc = Bun.spawn(argv, { stdio: ["ignore", "pipe", "pipe", fd] });
    const [, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited, ...checks]);
    const ms = performance.now() - t;
    const cpuMs = cpuMsOf("self") - cpu0;
    if (code !== 0) throw new Error(`raw criu restore failed (${code}): ${stderr}`);
    pid = Number(readFileSync(pidFile, "utf8").trim());
    undo.pop();
    await cleanup(pid);
    return { ms, cpuMs };
  } finally {
    closeSync(fd);
  }
}

/**
 * A test host whose agent's patch-status service looks at an empty root: the
 * real one re-reads the package database whenever it changes (apt runs on this
 * machine), which would compete for the two cores during a measurement.
 */
async function quietHost(tag: string): Promise<TestHost> {
  const h = await TestHost.start(tag);
  const root = join(work, `status-root-${tag}`);
  mkdirSync(root, { recursive: true });
  appendFileSync(h.configPath, `[status]\nroot = "${root}"\n`);
  await h.killAgent("SIGTERM");
  await h.startAgent(undefined, isNativeOff ? { AUTOPOD_NATIVE_HASH: "false" } : {});
  return h;
}

async function main() {
  const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  const out: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, kernel, criu: await criuVersion(CRIU!), bun: Bun.version },
    mib: MIB,
    runs: RUNS,
  };
  log(`hashing throughput`);
  out.hashing = await hashThroughput(256 << 20);

  host = await quietHost("bk");
  if (isRestoreOnly) return { ...out, ...(await restoreOnly(host)) };
  other = await quietHost("bi");
  const rawDir = join(host.stateDir, "bench-raw");

  // ---- --leave-running: raw dump vs checkpoint, freeze, and the 1% second checkpoint ----
  log(`pod lr: memhog ${MIB}`);
  await host.run("lr", ["/usr/local/bin/memhog", String(MIB)]);
  await waitForLog(host, "lr", /ready/);
  const lrRaw = [];
  for (let i = 0; i < RUNS; i++) lrRaw.push(await rawDump(host, "lr", join(rawDir, "lr")));
  log("raw dumps, hashed and synced");
  const hashedDumps = [];
  for (let i = 0; i < RUNS; i++) hashedDumps.push(await rawDump(host, "lr", join(rawDir, "lr"), true));
  rmSync(join(rawDir, "lr"), { recursive: true, force: true });
  log("checkpoint lr --leave-running");
  const lr1 = await ok(host, ["checkpoint", "lr", "--leave-running", "--json"]);
  const lrFirst = JSON.parse(lr1.out) as CheckpointResult;
  await sh(["sync", "-f", host.stateDir]);
  process.kill((await host.pod("lr")).pid!, "SIGUSR1");
  await waitForLog(host, "lr", /changed \d+ pages/);
  log("checkpoint lr --leave-running, after 1% changed");
  const lr2 = await ok(host, ["checkpoint", "lr", "--leave-running", "--json"]);
  const lrSecond = JSON.parse(lr2.out) as CheckpointResult;
  await ok(host, ["rm", "--force", "lr"]);

  // ---- stop: raw dump vs checkpoint; raw restore vs restore; export, import ----
  log(`pod stop: memhog ${MIB}`);
  await host.run("stop", ["/usr/local/bin/memhog", String(MIB)]);
  await waitForLog(host, "stop", /ready/);
  const sumBefore = await checksum(host, "stop");
  const stopRaw = [];
  for (let i = 0; i < RUNS; i++) stopRaw.push(await rawDump(host, "stop", join(rawDir, "stop")));
  const rawDumpBytes = stopRaw[stopRaw.length - 1]!.bytes;
  log(`checkpoint stop 1/${RUNS}`);
  const cks = [await ok(host, ["checkpoint", "stop", "--json"])];
  await sh(["sync", "-f", host.stateDir]);

  const rec = record(host, "stop");
  const rawRestores = [];
  for (let i = 0; i < RUNS; i++) {
    log(`raw restore ${i + 1}/${RUNS}`);
    rawRestores.push(await rawRestore(rec, join(rawDir, "stop")));
  }
  log("raw restores, verified");
  const verifiedRestores = [];
  for (let i = 0; i < RUNS; i++) verifiedRestores.push(await rawRestore(rec, join(rawDir, "stop"), true));
  rmSync(rawDir, { recursive: true, force: true });
  await sh(["sync", "-f", host.stateDir]);
  const rss = [];
  for (let i = 0; ; i++) {
    const id = (JSON.parse(cks[i]!.out) as CheckpointResult).id;
    log(`restore stop ${i + 1}/${RUNS}`);
    rss.push(await ok(host, ["restore", id, "--json"]));
    const sumAfter = await checksum(host, "stop");
    if (sumAfter.split(" ")[1] !== sumBefore.split(" ")[1]) throw new Error(`memory differs after restore: ${sumBefore} vs ${sumAfter}`);
    if (i === RUNS - 1) break;
    // Each checkpoint the first of its kind: no parent, none of its pages stored.
    await ok(host, ["image", "rm", id]);
    await ok(host, ["image", "gc"]);
    await sh(["sync", "-f", host.stateDir]);
    log(`checkpoint stop ${i + 2}/${RUNS}`);
    cks.push(await ok(host, ["checkpoint", "stop", "--json"]));
    await sh(["sync", "-f", host.stateDir]);
  }
  const ck = medianRun(cks);
  const stopCk = JSON.parse(ck.out) as CheckpointResult;
  const rs = medianRun(rss);
  const restored = JSON.parse(rs.out) as { materializeMs: number; criuMs: number; totalMs: number; phases?: Record<string, number> };
  const lastId = (JSON.parse(cks[cks.length - 1]!.out) as CheckpointResult).id;

  log("export");
  const file = join(work, "stop.img");
  const ex = await ok(host, ["image", "export", lastId, file]);
  const exportBytes = statSync(file).size;
  await sh(["sync", "-f", file]);
  log("import into a second agent");
  const im = await ok(other, ["image", "import", file, "--trust"]);
  if (!im.out.includes(lastId)) throw new Error(`import printed ${im.out}, expected ${lastId}`);

  const rawDumpMs = summary(stopRaw.map((r) => r.dumpMs));
  const rawDurableMs = summary(stopRaw.map((r) => r.dumpMs + r.syncMs));
  const lrRawMs = summary(lrRaw.map((r) => r.dumpMs));
  const lrRawDurableMs = summary(lrRaw.map((r) => r.dumpMs + r.syncMs));
  const rawRestoreMs = summary(rawRestores.map((r) => r.ms));
  out.checkpoint = {
    rawCriuDumpMs: rawDumpMs,
    rawCriuDumpSyncMs: summary(stopRaw.map((r) => r.syncMs)),
    rawDumpBytes,
    /** The run of median CLI time, and every run's. */
    stop: { cliMs: round(ck.ms, 1), stealMs: ck.stealMs, ...stopCk, runs: cks.map(runSummary) },
    leaveRunning: {
      rawCriuDumpMs: lrRawMs,
      rawCriuDumpSyncMs: summary(lrRaw.map((r) => r.syncMs)),
      cliMs: round(lr1.ms, 1),
      stealMs: lr1.stealMs,
      ...lrFirst,
    },
    ratio: {
      /** `autopod checkpoint NAME` (CLI wall time) ÷ raw `criu dump` (wall time). */
      stop: round(ck.ms / rawDumpMs.median),
      /** The same, against a raw dump made as durable as a checkpoint's commit (dump, then fdatasync of its files). */
      stopVsDurableRawDump: round(ck.ms / rawDurableMs.median),
      leaveRunning: round(lr1.ms / lrRawMs.median),
      leaveRunningVsDurableRawDump: round(lr1.ms / lrRawDurableMs.median),
    },
  };
  out.restore = {
    rawCriuRestoreMs: rawRestoreMs,
    autopod: { cliMs: round(rs.ms, 1), stealMs: rs.stealMs, ...restored, runs: rss.map(runSummary) },
    /** `autopod restore IMAGE` (CLI wall time) ÷ raw `criu restore` of a raw dump (wall time). */
    ratio: round(rs.ms / rawRestoreMs.median),
    memoryChecksumSame: true,
  };
  // The least a checkpoint that hashes every page and is durable before it answers (and a
  // restore that checks every page before the pod runs) takes here, with autopod's own hashing
  // and write-behind and no bookkeeping at all: what is left of a ratio above these is autopod's.
  const hashedDumpMs = summary(hashedDumps.map((d) => d.hashedMs + d.syncMs));
  const verifiedRestoreMs = summary(verifiedRestores.map((r) => r.ms));
  out.floor = {
    /** Raw dump, its pages hashed as CRIU writes them (one thread, then all) and written behind, then fsynced. */
    rawDumpHashedDurableMs: hashedDumpMs,
    checkpointRatio: round(hashedDumpMs.median / rawDumpMs.median),
    /** Raw restore while every page of its images is hashed on all threads but one (as autopod's restore checks them). */
    rawRestoreVerifiedMs: verifiedRestoreMs,
    restoreRatio: round(verifiedRestoreMs.median / rawRestoreMs.median),
  };
  out.freeze = { leaveRunningFreezeMs: lrFirst.freezeMs, secondFreezeMs: lrSecond.freezeMs, rawDumpMs: lrRawMs.median };
  out.dedup = {
    firstNewBytes: lrFirst.newBytes,
    secondLogicalBytes: lrSecond.logicalBytes,
    secondNewBytes: lrSecond.newBytes,
    secondNewShare: round(lrSecond.newBytes / lrFirst.newBytes, 4),
    secondTotalMs: lrSecond.totalMs,
  };
  out.transfer = {
    exportBytes,
    exportMs: round(ex.ms, 1),
    exportMBps: mbps(exportBytes, ex.ms),
    importMs: round(im.ms, 1),
    importMBps: mbps(exportBytes, im.ms),
  };
  return out;
}

/** --restore-only: raw restore (plain and verified) against `autopod restore` of a stop-checkpoint, RUNS each, interleaved. */
async function restoreOnly(h: TestHost): Promise<Record<string, unknown>> {
  const rawDir = join(h.stateDir, "bench-raw");
  log(`pod stop: memhog ${MIB}`);
  await h.run("stop", ["/usr/local/bin/memhog", String(MIB)]);
  await waitForLog(h, "stop", /ready/);
  const sumBefore = await checksum(h, "stop");
  await rawDump(h, "stop", join(rawDir, "stop"));
  const rec = record(h, "stop");
  const raws = [];
  const verified = [];
  const rss = [];
  const cks = [];
  const cpus: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    log(`checkpoint stop ${i + 1}/${RUNS}`);
    const ck = await ok(h, ["checkpoint", "stop", "--json"]);
    cks.push(ck);
    const id = (JSON.parse(ck.out) as CheckpointResult).id;
    await sh(["sync", "-f", h.stateDir]);
    log(`raw restore ${i + 1}/${RUNS}, plain and verified`);
    raws.push(await rawRestore(rec, join(rawDir, "stop")));
    verified.push(await rawRestore(rec, join(rawDir, "stop"), true));
    log(`restore stop ${i + 1}/${RUNS}`);
    const agentPid = h.agent!.pid;
    const cpu0 = cpuMsOf(agentPid);
    rss.push(await ok(h, ["restore", id, "--json"]));
    cpus.push(cpuMsOf(agentPid) - cpu0);
    const sumAfter = await checksum(h, "stop");
    if (sumAfter.split(" ")[1] !== sumBefore.split(" ")[1]) throw new Error(`memory differs after restore: ${sumBefore} vs ${sumAfter}`);
    if (i < RUNS - 1) {
      await ok(h, ["image", "rm", id]);
      await ok(h, ["image", "gc"]);
    }
  }
  rmSync(rawDir, { recursive: true, force: true });
  const rs = medianRun(rss);
  const rawMs = summary(raws.map((r) => r.ms));
  const verifiedMs = summary(verified.map((r) => r.ms));
  return {
    checkpoint: { stop: { cliMs: round(medianRun(cks).ms, 1), runs: cks.map(runSummary) } },
    restore: {
      rawCriuRestoreMs: rawMs,
      autopod: { cliMs: round(rs.ms, 1), stealMs: rs.stealMs, ...(JSON.parse(rs.out) as object), runs: rss.map(runSummary) },
      ratio: round(rs.ms / rawMs.median),
      memoryChecksumSame: true,
    },
    floor: { rawRestoreVerifiedMs: verifiedMs, restoreRatio: round(verifiedMs.median / rawMs.median) },
    /**
     * CPU time (all threads and reaped children: CRIU), ms: the agent's per restore, and the bench's own per raw
     * restore (plain, and with its check). CRIU's restorer copies the pages in the restored tasks, which neither
     * counts: this is the cost of verifying and of the bookkeeping around CRIU. The ratio: autopod's ÷ the verified raw one.
     */
    cpuMs: {
      autopodRestore: summary(cpus),
      rawCriuRestore: summary(raws.map((r) => r.cpuMs)),
      rawCriuRestoreVerified: summary(verified.map((r) => r.cpuMs)),
      ratioToVerified: round(summary(cpus).median / summary(verified.map((r) => r.cpuMs)).median),
    },
    agentNativeHash: !isNativeOff,
    loadAverage: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number),
  };
}

let result: Record<string, unknown> | null = null;
let failure: unknown = null;
try {
  result = await main();
} catch (e) {
  failure = e;
} finally {
  for (const u of undo.reverse()) await u().catch(() => undefined);
  await host?.dispose().catch((e) => log(`dispose: ${e}`));
  await other?.dispose().catch((e) => log(`dispose: ${e}`));
  rmSync(work, { recursive: true, force: true });
  workers.close();
}
if (failure) {
  console.error(failure);
  process.exit(1);
}
console.log(JSON.stringify(result, null, 2));
