/**
 * Processes on deleted or replaced libraries, for real: the test copies a
 * shared library into a system directory, starts processes that load it,
 * then deletes it (or replaces it with a new file) under them.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import type { GroupReason, ProcessReason } from "../src/status/checker.ts";
import { hostPaths } from "../src/status/host-paths.ts";
import { formatPrometheus } from "../src/status/prometheus.ts";
import { replacedCodeChecker } from "../src/status/replaced-code.ts";
import { buildReport } from "../src/status/report.ts";
import { rootTest } from "./_support.ts";

const LIB = [
  "/usr/lib/x86_64-linux-gnu/libz.so.1",
  "/lib/x86_64-linux-gnu/libz.so.1",
  "/usr/lib/aarch64-linux-gnu/libz.so.1",
  "/usr/lib64/libz.so.1",
  "/lib/libz.so.1",
].find(existsSync);
// A system directory, where packages install: what the verdict counts.
const DIR = `/usr/lib/autopod-status-test-${process.pid}`;
const procs: Bun.Subprocess[] = [];

function sleeper(preload?: string): Bun.Subprocess {
  const p = Bun.spawn(["sleep", "300"], { env: { ...process.env, ...(preload ? { LD_PRELOAD: preload } : {}) }, stdout: "ignore", stderr: "ignore" });
  procs.push(p);
  return p;
}

/** Wait until the dynamic loader has mapped the library into the process. */
async function waitForMapping(pid: number, path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (
      (
        await Bun.file(`/proc/${pid}/maps`)
          .text()
          .catch(() => "")
      ).includes(path)
    )
      return;
    await Bun.sleep(10);
  }
  throw new Error(`pid ${pid} never mapped "${path}"`);
}

let deletedOne: Bun.Subprocess;
let upgradedOne: Bun.Subprocess;
let replacedOne: Bun.Subprocess;
let mounted: string | null = null;
let untouched: Bun.Subprocess;
let untouchedPreloaded: Bun.Subprocess;

beforeAll(async () => {
  if (process.getuid?.() !== 0 || !LIB) return;
  mkdirSync(DIR, { recursive: true });
  const doomed = join(DIR, "libz-deleted.so.1");
  const upgraded = join(DIR, "libz-upgraded.so.1");
  const overmounted = join(DIR, "libz-overmounted.so.1");
  const kept = join(DIR, "libz-kept.so.1");
  for (const p of [doomed, upgraded, overmounted, kept]) copyFileSync(LIB, p);
  deletedOne = sleeper(doomed);
  upgradedOne = sleeper(upgraded);
  replacedOne = sleeper(overmounted);
  untouchedPreloaded = sleeper(kept);
  untouched = sleeper();
  await waitForMapping(deletedOne.pid, doomed);
  await waitForMapping(upgradedOne.pid, upgraded);
  await waitForMapping(replacedOne.pid, overmounted);
  await waitForMapping(untouchedPreloaded.pid, kept);
  rmSync(doomed);
  // What dpkg does on an upgrade: write the new file beside, rename it over the old one.
  copyFileSync(LIB, `${upgraded}.dpkg-new`);
  renameSync(`${upgraded}.dpkg-new`, upgraded);
  // Another file now at the path without the old one being unlinked: a bind mount over it.
  copyFileSync(LIB, `${overmounted}.other`);
  const m = await run(["mount", "--bind", `${overmounted}.other`, overmounted]);
  if (m.exitCode !== 0) throw new Error(`mount --bind failed: ${m.stderr}`);
  mounted = overmounted;
});

afterAll(async () => {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  if (mounted) await run(["umount", mounted]);
  rmSync(DIR, { recursive: true, force: true });
});

rootTest("processes on a deleted, an upgraded (renamed over) and an overmounted library are named; unchanged ones are not", async () => {
  if (!LIB) throw new Error("no libz.so.1 found to copy");
  if (!which("sleep")) throw new Error("no sleep(1)");
  const r = await replacedCodeChecker.check({ paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 });
  const processes = r.reasons.filter((x): x is ProcessReason => x.kind === "process");
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  expect(byPid.get(deletedOne.pid)).toEqual({
    kind: "process",
    pid: deletedOne.pid,
    command: "sleep",
    files: [{ path: join(DIR, "libz-deleted.so.1"), change: "deleted" }],
  });
  expect(byPid.get(upgradedOne.pid)).toEqual({
    kind: "process",
    pid: upgradedOne.pid,
    command: "sleep",
    files: [{ path: join(DIR, "libz-upgraded.so.1"), change: "deleted" }],
  });
  expect(byPid.get(replacedOne.pid)).toEqual({
    kind: "process",
    pid: replacedOne.pid,
    command: "sleep",
    files: [{ path: join(DIR, "libz-overmounted.so.1"), change: "replaced" }],
  });
  expect(byPid.has(untouched.pid)).toBe(false);
  expect(byPid.has(untouchedPreloaded.pid)).toBe(false);
  expect(byPid.has(process.pid)).toBe(false);
  // Grouped: these sleepers belong to no unit or pod on this host, so they group by command.
  const group = r.reasons.find((x): x is GroupReason => x.kind === "group" && x.pids.includes(deletedOne.pid));
  expect(group?.pids).toEqual(expect.arrayContaining([deletedOne.pid, upgradedOne.pid, replacedOne.pid]));
  expect(r.verdict).toBe("reboot_required");
  expect(r.summary).toContain(String(deletedOne.pid));
});

rootTest("the same library deleted from outside the system directories is named but does not ask for a reboot", async () => {
  if (!LIB) throw new Error("no libz.so.1 found to copy");
  const dir = `/srv/autopod-status-test-${process.pid}`;
  mkdirSync(dir, { recursive: true });
  const lib = join(dir, "libz.so.1");
  copyFileSync(LIB, lib);
  const p = sleeper(lib);
  try {
    await waitForMapping(p.pid, lib);
    rmSync(lib);
    const r = await replacedCodeChecker.check({ paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 });
    expect(r.reasons).toContainEqual({ kind: "process", pid: p.pid, command: "sleep", files: [{ path: lib, change: "deleted" }] });
    expect(r.summary).toMatch(new RegExp(`not counted \\(pods, or files outside system paths\\): .*sleep \\(pid ${p.pid}\\)`));
  } finally {
    p.kill();
    await p.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

rootTest("a library deleted under /run or /var/tmp is not named at all, in the report or the gauge (needrestart ignores them too)", async () => {
  if (!LIB) throw new Error("no libz.so.1 found to copy");
  const dirs = [`/run/autopod-status-test-${process.pid}`, `/var/tmp/autopod-status-test-${process.pid}`];
  const sleepers: Bun.Subprocess[] = [];
  try {
    for (const dir of dirs) {
      mkdirSync(dir, { recursive: true });
      const lib = join(dir, "libz.so.1");
      copyFileSync(LIB, lib);
      const p = sleeper(lib);
      sleepers.push(p);
      await waitForMapping(p.pid, lib);
      rmSync(lib);
    }
    const r = await replacedCodeChecker.check({ paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 });
    const pids = r.reasons.filter((x): x is ProcessReason => x.kind === "process").map((p) => p.pid);
    for (const p of sleepers) expect(pids).not.toContain(p.pid);
    // The gauge counts the processes the report names, so it cannot count these either.
    const report = buildReport("h", new Date(), 1, [
      { check: "replaced_code", source: "", verdict: r.verdict, summary: r.summary, reasons: r.reasons, duration_ms: 1 },
    ]);
    const gauge = Number(/^autopod_processes_on_replaced_code (\d+)$/m.exec(formatPrometheus(report))?.[1]);
    expect(gauge).toBe(pids.length);
  } finally {
    for (const p of sleepers) p.kill();
    await Promise.all(sleepers.map((p) => p.exited));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
});
