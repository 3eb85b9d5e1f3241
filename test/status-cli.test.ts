/**
 * `autopod status` as a new user runs it on this host: the table, --json
 * against the documented schema, --prometheus, and exit statuses.
 */
import { describe, expect, test } from "bun:test";
import { EXIT_STATUS } from "../src/status/report.ts";
import { StatusReportSchema } from "../src/status/report-schema.ts";
import { autopod } from "./_support.ts";

const CHECKS = ["apt", "dnf", "apk", "reboot", "kernel", "replaced_code"];

describe("autopod status", () => {
  test("--json is valid, follows the schema, and the exit status matches the verdict", async () => {
    const r = await autopod(["status", "--json"], { timeoutMs: 180_000 });
    const report = StatusReportSchema.parse(JSON.parse(r.stdout));
    expect(report.checks.map((c) => c.check)).toEqual(CHECKS);
    expect(r.exitCode).toBe(report.verdict === "not_applicable" ? 0 : EXIT_STATUS[report.verdict]);
    // This Debian host: apt runs, the other managers do not apply.
    expect(report.checks.find((c) => c.check === "dnf")?.verdict).toBe("not_applicable");
    expect(report.checks.find((c) => c.check === "apk")?.verdict).toBe("not_applicable");
    expect(report.checks.find((c) => c.check === "apt")?.verdict).not.toBe("error");
  }, 180_000);

  test("the table: one line per check, then the verdict", async () => {
    const r = await autopod(["status"], { timeoutMs: 180_000 });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^CHECK\s+VERDICT\s+SUMMARY$/);
    expect(lines.slice(1, 7).map((l) => l.split(/\s+/)[0])).toEqual(CHECKS);
    expect(lines[8]).toMatch(new RegExp(`^verdict: \\w+ \\(exit ${r.exitCode}\\)`));
    expect(r.stderr).toBe("");
  }, 180_000);

  test("--prometheus is valid text format", async () => {
    const r = await autopod(["status", "--prometheus"], { timeoutMs: 180_000 });
    const lines = r.stdout.trimEnd().split("\n");
    const sample =
      /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? -?[0-9.e+-]+$/;
    for (const l of lines) expect(l.startsWith("# HELP ") || l.startsWith("# TYPE ") || sample.test(l)).toBe(true);
    for (const name of ["autopod_updates_pending", "autopod_reboot_required", "autopod_check_status"]) expect(r.stdout).toContain(`# TYPE ${name} gauge`);
    expect(r.stdout).toMatch(/^autopod_updates_pending\{kind="security"\} \d+$/m);
  }, 180_000);

  test("--help documents the exit statuses; --json with --prometheus is a usage error", async () => {
    const help = await autopod(["status", "--help"]);
    expect(help.exitCode).toBe(0);
    for (const s of ["0  all clear", "10  updates available", "11  security updates available", "12  reboot required"]) expect(help.stdout).toContain(s);
    const both = await autopod(["status", "--json", "--prometheus"]);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toContain("Choose one of --json and --prometheus");
  });
});
