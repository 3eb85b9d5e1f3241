import { describe, expect, test } from "bun:test";
import type { Checker, CheckOptions } from "./checker.ts";
import { collectStatus, runCheck } from "./collect.ts";
import { hostPaths } from "./host-paths.ts";
import { formatPrometheus } from "./prometheus.ts";
import { buildReport, type CheckReport, EXIT_STATUS, exitStatusOf } from "./report.ts";
import { StatusReportSchema } from "./report-schema.ts";
import { formatTable } from "./table.ts";
import type { Verdict } from "./verdict.ts";

const check = (name: string, verdict: Verdict, extra: Partial<CheckReport> = {}): CheckReport => ({
  check: name,
  source: "test",
  verdict,
  summary: `${name} says ${verdict}`,
  reasons: [],
  duration_ms: 1,
  ...extra,
});
const pkg = (name: string, security: boolean) => ({ kind: "package" as const, name, installed: "1.0-1", candidate: "1.0-2", security, origins: [] });

describe("buildReport and exitStatusOf", () => {
  const cases: Array<[string, Verdict[], Verdict, number]> = [
    ["all clear", ["ok", "not_applicable", "ok"], "ok", 0],
    ["nothing applies", ["not_applicable"], "ok", 0],
    ["updates", ["update_available", "ok"], "update_available", 10],
    ["security beats updates", ["update_available", "security_update_available"], "security_update_available", 11],
    ["reboot beats security", ["security_update_available", "reboot_required"], "reboot_required", 12],
    ["an error alone is an error, never all clear", ["ok", "error"], "error", 1],
    ["a definite finding outranks an error", ["error", "reboot_required"], "reboot_required", 12],
  ];
  for (const [name, verdicts, want, exit] of cases) {
    test(name, () => {
      const r = buildReport(
        "h",
        new Date(0),
        5,
        verdicts.map((v, i) => check(`c${i}`, v)),
      );
      expect(r.verdict).toBe(want);
      expect(exitStatusOf(r)).toBe(exit);
      expect(r.complete).toBe(!verdicts.includes("error"));
    });
  }
  test("exit statuses are distinct", () => expect(new Set(Object.values(EXIT_STATUS)).size).toBe(5));
  test("counts updates and sets needs_update and needs_reboot", () => {
    const r = buildReport("h", new Date(0), 5, [
      check("apt", "security_update_available", { reasons: [pkg("a", true), pkg("b", false), pkg("c", true)] }),
      check("kernel", "reboot_required"),
    ]);
    expect(r.updates).toEqual({ total: 3, security: 2 });
    expect(r.needs_update).toBe(true);
    expect(r.needs_reboot).toBe(true);
    expect(StatusReportSchema.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
  });
});

/** A strict reader of the Prometheus text format 0.0.4, enough to prove the output valid. */
function parsePrometheusText(text: string): Map<string, number> {
  expect(text.endsWith("\n")).toBe(true);
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  const name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const label = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
  const sample = new RegExp(`^(${name})(\\{${label}(?:,${label})*\\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$`);
  for (const line of text.slice(0, -1).split("\n")) {
    let m;
    if ((m = new RegExp(`^# HELP (${name}) .+$`).exec(line))) continue;
    if ((m = new RegExp(`^# TYPE (${name}) (gauge|counter|untyped)$`).exec(line))) {
      expect(typed.has(m[1]!)).toBe(false);
      typed.add(m[1]!);
      continue;
    }
    m = sample.exec(line);
    if (!m) throw new Error(`Not a valid Prometheus line: ${line}`);
    expect(typed.has(m[1]!)).toBe(true); // TYPE comes before the samples
    const key = m[1]! + (m[2] ?? "");
    expect(samples.has(key)).toBe(false); // no duplicate series
    samples.set(key, Number(m[3]));
  }
  return samples;
}

describe("formatPrometheus", () => {
  test("valid text format with the documented series", () => {
    const r = buildReport('host "a"\\b', new Date(1_700_000_000_000), 5, [
      check("apt", "security_update_available", { reasons: [pkg("a", true), pkg("b", false)] }),
      check("kernel", "reboot_required", {
        reasons: [{ kind: "kernel", change: "abi_rebuild", running: "6.1.0-18-amd64", installed: "6.1.0-18-amd64", image: "/boot/x" }],
      }),
      check("replaced_code", "error"),
    ]);
    const s = parsePrometheusText(formatPrometheus(r));
    expect(s.get('autopod_updates_pending{kind="security"}')).toBe(1);
    expect(s.get('autopod_updates_pending{kind="other"}')).toBe(1);
    expect(s.get("autopod_reboot_required")).toBe(1);
    expect(s.get('autopod_kernel_update_pending{change="abi_rebuild"}')).toBe(1);
    expect(s.get('autopod_kernel_update_pending{change="version_upgrade"}')).toBe(0);
    expect(s.get('autopod_check_status{check="apt",verdict="security_update_available"}')).toBe(1);
    expect(s.get('autopod_check_status{check="apt",verdict="ok"}')).toBe(0);
    expect(s.get('autopod_status_verdict{verdict="reboot_required"}')).toBe(1);
    expect(s.get("autopod_status_complete")).toBe(0);
    expect(s.get("autopod_status_checked_timestamp_seconds")).toBe(1_700_000_000);
    expect(s.get('autopod_status_info{host="host \\"a\\"\\\\b"}')).toBe(1);
  });
});

test("formatTable: one line per check, then the verdict with its exit status", () => {
  const r = buildReport("h", new Date(0), 1500, [check("apt", "update_available", { reasons: [pkg("zip", false)] }), check("kernel", "ok")]);
  const lines = formatTable(r).split("\n");
  expect(lines[0]).toMatch(/^CHECK\s+VERDICT\s+SUMMARY$/);
  expect(lines[1]).toMatch(/^apt\s+update_available\s+apt says update_available$/);
  expect(lines[2]).toMatch(/^kernel\s+ok\s+kernel says ok$/);
  expect(lines[4]).toStartWith("verdict: update_available (exit 10); host h");
  expect(formatTable(r, { verbose: true })).toContain("- zip 1.0-1 -> 1.0-2");
});

describe("collectStatus", () => {
  const opts: CheckOptions = { paths: hostPaths(), run: async () => ({}) as never, which: () => null, lockTimeoutMs: 1, commandTimeoutMs: 1 };
  test("a checker that throws becomes an error verdict with its message", async () => {
    const boom: Checker = { name: "boom", source: "nowhere", check: async () => Promise.reject(new Error('Cannot read "x"')) };
    expect(await runCheck(boom, opts)).toMatchObject({ check: "boom", verdict: "error", error: 'Cannot read "x"' });
  });
  test("runs the given checkers concurrently and validates against the schema", async () => {
    const slow = (name: string, verdict: Verdict): Checker => ({
      name,
      source: "s",
      check: async () => {
        await Bun.sleep(100);
        return { verdict, summary: name, reasons: [] };
      },
    });
    const t = performance.now();
    const r = await collectStatus({ checkers: [slow("a", "ok"), slow("b", "update_available"), slow("c", "ok")], host: "test" });
    expect(performance.now() - t).toBeLessThan(290);
    expect(r.checks.map((c) => c.check)).toEqual(["a", "b", "c"]);
    expect(r.verdict).toBe("update_available");
    StatusReportSchema.parse(r);
  });
});
