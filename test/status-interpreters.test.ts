/**
 * Interpreters running replaced code, for real: Python and Perl services
 * started from a system directory, whose module (or script) the test then
 * replaces the way dpkg does (write the new file beside it, rename it over)
 * or deletes. The files belong to a package of a dpkg database the test
 * makes, so the report names the package too, through the real dpkg-query.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import type { ProcessReason } from "../src/status/checker.ts";
import { hostPaths } from "../src/status/host-paths.ts";
import { replacedCodeChecker } from "../src/status/replaced-code.ts";
import { autopod, rootTest } from "./_support.ts";

// Debian's interpreters, not a user's (pyenv shims and the like): what a packaged service runs.
const PYTHON = ["/usr/bin/python3"].find((p) => Bun.file(p).size > 0);
const PERL = ["/usr/bin/perl"].find((p) => Bun.file(p).size > 0);
// System directories, where packages install: what the verdict counts.
const DIR = `/usr/lib/autopod-interp-test-${process.pid}`;
const CLEAN = `/usr/lib/autopod-interp-clean-${process.pid}`;
const PACKAGE = "autopod-demo-service";
const procs: Bun.Subprocess[] = [];
let root = "";

/** dpkg's way: the new file beside the old, renamed over it (a new inode at the same path). */
function replaceLikeDpkg(path: string, text: string): void {
  writeFileSync(`${path}.dpkg-new`, text);
  renameSync(`${path}.dpkg-new`, path);
}

/** Start an interpreter and wait until it printed "ready" (its imports are done). */
async function service(argv: string[], env: Record<string, string> = {}): Promise<Bun.Subprocess<"ignore", "pipe", "inherit">> {
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "inherit", env: { PATH: "/usr/bin:/bin", ...env } });
  procs.push(p);
  const reader = p.stdout.getReader();
  let seen = "";
  while (!seen.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${argv.join(" ")} exited before it was ready: ${seen}`);
    seen += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return p;
}

let pyReplaced: Bun.Subprocess;
let pyPackageReplaced: Bun.Subprocess;
let pyClean: Bun.Subprocess;
let pyInline: Bun.Subprocess;
let plModule: Bun.Subprocess;
let plDeleted: Bun.Subprocess;

beforeAll(async () => {
  if (process.getuid?.() !== 0 || !PYTHON || !PERL) return;
  mkdirSync(join(DIR, "pkgmod"), { recursive: true });
  mkdirSync(join(DIR, "Demo"), { recursive: true });
  mkdirSync(CLEAN, { recursive: true });
  const wait = "import sys, time\nprint('ready', flush=True)\ntime.sleep(300)\n";
  writeFileSync(join(DIR, "svc.py"), `import helper\nimport json\n${wait}`);
  writeFileSync(join(DIR, "helper.py"), "VERSION = 1\n");
  writeFileSync(join(DIR, "svc_pkg.py"), `from pkgmod import sub\n${wait}`);
  writeFileSync(join(DIR, "pkgmod/__init__.py"), "");
  writeFileSync(join(DIR, "pkgmod/sub.py"), "VERSION = 1\n");
  writeFileSync(join(CLEAN, "svc.py"), `import cleanhelper\n${wait}`);
  writeFileSync(join(CLEAN, "cleanhelper.py"), "VERSION = 1\n");
  writeFileSync(join(DIR, "svc.pl"), 'use strict;\nuse Demo::Mod;\n$| = 1;\nprint "ready\\n";\nsleep 300;\n');
  writeFileSync(join(DIR, "once.pl"), '$| = 1;\nprint "ready\\n";\nsleep 300;\n');
  writeFileSync(join(DIR, "Demo/Mod.pm"), "package Demo::Mod;\n1;\n");
  // A dpkg database that says the package owns the service's files.
  root = mkdtempSync(join(tmpdir(), "autopod-interp-root-"));
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "var/lib/dpkg/info"), { recursive: true });
  writeFileSync(join(root, "etc/os-release"), "ID=debian\n");
  writeFileSync(
    join(root, "var/lib/dpkg/status"),
    `Package: ${PACKAGE}\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 1\nMaintainer: autopod tests <root@localhost>\nArchitecture: all\nVersion: 1.0-1\nDescription: a service of the status test\n\n`,
  );
  writeFileSync(
    join(root, `var/lib/dpkg/info/${PACKAGE}.list`),
    ["/usr", "/usr/lib", DIR, join(DIR, "svc.py"), join(DIR, "helper.py"), join(DIR, "pkgmod"), join(DIR, "pkgmod/sub.py"), ""].join("\n"),
  );

  pyReplaced = await service([PYTHON, "-u", join(DIR, "svc.py")]);
  pyPackageReplaced = await service([PYTHON, join(DIR, "svc_pkg.py")]);
  pyClean = await service([PYTHON, join(CLEAN, "svc.py")]);
  pyInline = await service([PYTHON, "-c", wait]);
  plModule = await service([PERL, join(DIR, "svc.pl")], { PERL5LIB: DIR });
  plDeleted = await service([PERL, "-w", join(DIR, "once.pl")]);
  await Bun.sleep(100); // past the start times' resolution
  replaceLikeDpkg(join(DIR, "helper.py"), "VERSION = 2\n");
  replaceLikeDpkg(join(DIR, "pkgmod/sub.py"), "VERSION = 2\n");
  replaceLikeDpkg(join(DIR, "Demo/Mod.pm"), "package Demo::Mod;\nour $VERSION = 2;\n1;\n");
  rmSync(join(DIR, "once.pl"));
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  rmSync(DIR, { recursive: true, force: true });
  rmSync(CLEAN, { recursive: true, force: true });
  if (root) rmSync(root, { recursive: true, force: true });
});

rootTest("interpreters whose module or script was replaced or deleted after they started are named, with the owning package", async () => {
  if (!PYTHON || !PERL) throw new Error("needs Debian's /usr/bin/python3 and /usr/bin/perl (scripts/test.sh installs python3)");
  expect(which("dpkg-query")).not.toBeNull();
  const r = await replacedCodeChecker.check({ paths: hostPaths({ root }), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 30_000 });
  const byPid = new Map(r.reasons.filter((x): x is ProcessReason => x.kind === "process").map((p) => [p.pid, p]));
  expect(byPid.get(pyReplaced.pid)).toMatchObject({
    command: "python3",
    files: [{ path: join(DIR, "helper.py"), change: "replaced", loaded_by: "python", package: PACKAGE }],
  });
  // "from pkgmod import sub": the submodule of a package.
  expect(byPid.get(pyPackageReplaced.pid)?.files).toEqual([{ path: join(DIR, "pkgmod/sub.py"), change: "replaced", loaded_by: "python", package: PACKAGE }]);
  // Perl: a module found through PERL5LIB, no package owns it.
  expect(byPid.get(plModule.pid)?.files).toEqual([{ path: join(DIR, "Demo/Mod.pm"), change: "replaced", loaded_by: "perl" }]);
  // A script deleted under its process.
  expect(byPid.get(plDeleted.pid)?.files).toEqual([{ path: join(DIR, "once.pl"), change: "deleted", loaded_by: "perl" }]);
  // Untouched modules (the standard library's json too) and code on the command line are not named.
  expect(byPid.has(pyClean.pid)).toBe(false);
  expect(byPid.has(pyInline.pid)).toBe(false);
  expect(r.verdict).toBe("reboot_required");
  expect(r.summary).toContain(`pid ${pyReplaced.pid}`);
});

rootTest(
  "the replaced module is found by the compiled binary's `autopod status --json` too",
  async () => {
    if (!PYTHON) throw new Error("needs /usr/bin/python3");
    const cli = await autopod(["status", "--json"], { env: { AUTOPOD_STATUS_ROOT: root, AUTOPOD_STATE_DIR: join(root, "state") }, timeoutMs: 180_000 });
    const report = JSON.parse(cli.stdout) as { checks: Array<{ check: string; reasons: Array<{ kind: string; pid?: number; files?: unknown[] }> }> };
    const rc = report.checks.find((c) => c.check === "replaced_code")!;
    expect(rc.reasons.find((x) => x.kind === "process" && x.pid === pyReplaced.pid)?.files).toEqual([
      { path: join(DIR, "helper.py"), change: "replaced", loaded_by: "python", package: PACKAGE },
    ]);
    expect(cli.exitCode).toBe(12);
  },
  180_000,
);
