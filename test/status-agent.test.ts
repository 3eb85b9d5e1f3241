/**
 * The agent's status service, on a netns test host with its own agent whose
 * status checks look at a fake root (status.root): the agent serves its
 * cached report (`autopod status --from-agent`, GET /v1/status and
 * /v1/status/metrics), refreshes it when a watched file changes, checks afresh
 * on request, and starts without waiting for a slow first check. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalClient } from "../src/api/local/client.ts";
import { EXIT_STATUS, type StatusReport } from "../src/status/report.ts";
import { StatusReportSchema } from "../src/status/report-schema.ts";
import type { StatusSnapshot } from "../src/status/service.ts";
import { TestHost } from "./_pods.ts";
import { DIST, isRoot, rootTest } from "./_support.ts";

// A dist/autopod built before the agent served status cannot run these: use the sources.
const savedFromSource = process.env.AUTOPOD_TEST_FROM_SOURCE;
if (isRoot && !process.env.AUTOPOD_TEST_FROM_SOURCE) {
  const help = Bun.spawnSync([DIST, "status", "--help"], { stdout: "pipe", stderr: "ignore" });
  if (help.exitCode !== 0 || !help.stdout.toString().includes("--from-agent")) process.env.AUTOPOD_TEST_FROM_SOURCE = "1";
}

const CHECKS = ["apt", "dnf", "apk", "reboot", "kernel", "replaced_code"];
const T = 120_000;

let host: TestHost | null = null;
let root = "";
const dirs: string[] = [];

afterAll(async () => {
  await host?.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  if (savedFromSource === undefined) delete process.env.AUTOPOD_TEST_FROM_SOURCE;
  else process.env.AUTOPOD_TEST_FROM_SOURCE = savedFromSource;
}, 60_000);

/** The test host, its agent's status checks pointed at an empty fake root. */
async function statusHost(): Promise<TestHost> {
  if (host) return host;
  root = mkdtempSync(join(tmpdir(), "autopod-status-root-"));
  dirs.push(root);
  for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
  host = await TestHost.start("st");
  appendFileSync(host.configPath, ["", "[status]", `root = "${root}"`, "lock_timeout_seconds = 5", ""].join("\n"));
  await host.killAgent("SIGTERM");
  await host.startAgent();
  return host;
}

function client(h: TestHost): LocalClient {
  return new LocalClient(h.socket);
}

async function reportFromAgent(h: TestHost, extra: string[] = []): Promise<{ report: StatusReport; exitCode: number; stderr: string }> {
  const r = await h.cli(["status", "--from-agent", "--json", ...extra], T);
  if (r.stdout === "") throw new Error(`autopod status --from-agent exited ${r.exitCode}: ${r.stderr}`);
  return { report: StatusReportSchema.parse(JSON.parse(r.stdout)), exitCode: r.exitCode, stderr: r.stderr };
}

const verdictOf = (r: StatusReport, check: string) => r.checks.find((c) => c.check === check)?.verdict;
const exitFor = (r: StatusReport) => (r.verdict === "not_applicable" ? 0 : EXIT_STATUS[r.verdict]);

/** Poll the agent's cached report (not forcing a refresh) until it satisfies pred. */
async function waitForReport(h: TestHost, pred: (s: StatusSnapshot) => boolean, timeoutMs = 30_000): Promise<StatusSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await client(h).status();
    if (pred(s)) return s;
    if (Date.now() > deadline)
      throw new Error(
        `The agent's status did not change as expected: ${JSON.stringify({ ...s, report: s.report && { checked_at: s.report.checked_at, verdict: s.report.verdict } })}`,
      );
    await Bun.sleep(200);
  }
}

describe("the agent's status service", () => {
  rootTest(
    "serves its report: --from-agent prints the documented JSON, the table and Prometheus text, with the same exit statuses",
    async () => {
      const h = await statusHost();
      const { report, exitCode } = await reportFromAgent(h);
      expect(report.checks.map((c) => c.check)).toEqual(CHECKS);
      expect(exitCode).toBe(exitFor(report));
      // The fake root: no package database, no kernels, no sentinel.
      for (const c of ["apt", "dnf", "apk", "kernel"]) expect(verdictOf(report, c)).toBe("not_applicable");
      expect(verdictOf(report, "reboot")).toBe("ok");

      const snap = await client(h).status();
      expect(snap.checked_at).toBe(snap.report!.checked_at);
      expect(typeof snap.refreshing).toBe("boolean");
      expect(snap.refresh_seconds).toBe(3600);
      expect(snap.last_error).toBeNull();
      expect(snap.collections.startup).toBe(1);
      expect(snap.watching).toContain(join(root, "run"));

      const table = await h.cli(["status", "--from-agent"], T);
      expect(table.exitCode).toBe(exitCode);
      const lines = table.stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(/^CHECK\s+VERDICT\s+SUMMARY$/);
      expect(lines.slice(1, 7).map((l) => l.split(/\s+/)[0])).toEqual(CHECKS);
      expect(table.stdout).toContain(`verdict: ${snap.report!.verdict} (exit ${exitCode})`);
      expect(table.stdout).toMatch(/from the agent: checked \d+ s ago/);

      const prom = await h.cli(["status", "--from-agent", "--prometheus"], T);
      expect(prom.exitCode).toBe(exitCode);
      expect(prom.stdout).toMatch(/^autopod_reboot_required 0$/m);
      expect(prom.stdout).toMatch(/^autopod_updates_pending\{kind="security"\} 0$/m);

      const metrics = await client(h).statusMetrics();
      expect(metrics).toContain("# TYPE autopod_check_status gauge");
      expect(metrics).toMatch(/^autopod_status_refreshing [01]$/m);
      expect(metrics).toMatch(/^autopod_status_collections_total\{reason="startup"\} 1$/m);

      const bad = await fetch("http://autopod/v1/status?refresh=yes", { unix: h.socket } as RequestInit);
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_argument");

      const usage = await h.cli(["status", "--refresh"]);
      expect(usage.exitCode).toBe(2);
      expect(usage.stderr).toContain("--refresh goes with --from-agent");
    },
    T,
  );

  rootTest(
    "a watched file that appears, then goes, refreshes the report a few seconds later",
    async () => {
      const h = await statusHost();
      const before = await waitForReport(h, (s) => s.report !== null && !s.refreshing);
      const sentinel = join(root, "run/reboot-required");
      const touched = Date.now();
      writeFileSync(join(root, "run/reboot-required.pkgs"), "libc6\n");
      writeFileSync(sentinel, "*** System restart required ***\n");
      const after = await waitForReport(h, (s) => s.report !== null && verdictOf(s.report, "reboot") === "reboot_required");
      const waited = Date.now() - touched;
      expect(after.collections.change).toBeGreaterThan(before.collections.change);
      expect(after.collections.request).toBe(before.collections.request);
      expect(Date.parse(after.report!.checked_at)).toBeGreaterThanOrEqual(touched);
      expect(waited).toBeLessThan(20_000);
      const reboot = after.report!.checks.find((c) => c.check === "reboot")!;
      expect(reboot.reasons).toContainEqual({ kind: "file", path: sentinel, detail: "packages: libc6" });

      // The CLI reads the cached report and exits as a reboot is required.
      const cached = await reportFromAgent(h);
      expect(cached.exitCode).toBe(EXIT_STATUS.reboot_required);
      expect(cached.report.checked_at).toBe(after.report!.checked_at);

      unlinkSync(sentinel);
      unlinkSync(join(root, "run/reboot-required.pkgs"));
      const cleared = await waitForReport(h, (s) => s.report !== null && verdictOf(s.report, "reboot") === "ok");
      expect(cleared.collections.change).toBeGreaterThan(after.collections.change);
      console.log(`status-agent: the report showed the new sentinel ${waited} ms after it was written`);
    },
    T,
  );

  rootTest(
    "--refresh makes the agent check afresh and waits for it",
    async () => {
      const h = await statusHost();
      const before = await waitForReport(h, (s) => s.report !== null && !s.refreshing);
      const started = Date.now();
      const fresh = await reportFromAgent(h, ["--refresh"]);
      expect(Date.parse(fresh.report.checked_at)).toBeGreaterThanOrEqual(started - 1000);
      expect(fresh.report.checked_at > before.report!.checked_at).toBe(true);
      expect(fresh.exitCode).toBe(exitFor(fresh.report));
      const after = await client(h).status();
      expect(after.collections.request).toBe(before.collections.request + 1);
      expect(after.report!.checked_at).toBe(fresh.report.checked_at);
    },
    T,
  );

  rootTest(
    "the agent starts without waiting for its first check; --from-agent waits for it",
    async () => {
      const h = await statusHost();
      // A Debian-like fake root whose dpkg lock is held: the apt check waits lock_timeout_seconds (5 s).
      writeFileSync(join(root, "etc/os-release"), "ID=debian\n");
      mkdirSync(join(root, "var/lib/dpkg"), { recursive: true });
      writeFileSync(join(root, "var/lib/dpkg/status"), "");
      const lock = join(root, "var/lib/dpkg/lock-frontend");
      writeFileSync(lock, "");
      const holder = Bun.spawn(["flock", "--exclusive", lock, "sleep", "60"], { stdout: "ignore", stderr: "ignore" });
      try {
        await Bun.sleep(200);
        await h.killAgent("SIGTERM");
        const t0 = Date.now();
        await h.startAgent();
        const startMs = Date.now() - t0;
        const first = await client(h).status();
        expect(first.report).toBeNull();
        expect(first.refreshing).toBe(true);
        expect(startMs).toBeLessThan(5_000 + 2_000);
        const metrics = await fetch("http://autopod/v1/status/metrics", { unix: h.socket } as RequestInit);
        expect(metrics.status).toBe(503);
        expect(await metrics.text()).toContain("the first check is still running");

        const { report, exitCode } = await reportFromAgent(h);
        expect(verdictOf(report, "apt")).toBe("error");
        expect(report.checks.find((c) => c.check === "apt")!.reasons).toContainEqual({ kind: "lock", path: lock, pid: holder.pid, command: "flock" });
        expect(report.complete).toBe(false);
        expect(exitCode).toBe(exitFor(report));
        expect(Date.now() - t0).toBeGreaterThanOrEqual(5_000);
      } finally {
        holder.kill();
        await holder.exited;
      }
    },
    T,
  );
});
