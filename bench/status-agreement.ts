#!/usr/bin/env bun
/**
 * Agreement with unattended-upgrades on this host: which pending updates it
 * would install in its security-only configuration (Debian's two
 * Debian-Security origin patterns), against the apt check's `security`.
 *
 * unattended-upgrades is not installed: its .deb (and python3-distro-info's)
 * is fetched with `apt-get download` into .cache/agreement/ and unpacked
 * there, so the host's package database stays as it is. It runs with
 * `--dry-run` and `Debug::NoLocking` (it would otherwise hold the dpkg lock
 * for its whole run, and other checks would wait), and is stopped once it has
 * printed its list ("pkgs that look like they should be upgraded"), before
 * its slow per-package dry run. Root only. Prints JSON.
 * Usage: bun bench/status-agreement.ts   (UU_TIMEOUT_SECONDS=1800)
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import { aptChecker } from "../src/status/apt.ts";
import type { PackageReason } from "../src/status/checker.ts";
import { hostPaths } from "../src/status/host-paths.ts";

const dir = resolve(import.meta.dir, "../.cache/agreement");
const debs = join(dir, "debs");
const unpacked = join(dir, "x");
const timeoutMs = Number(process.env.UU_TIMEOUT_SECONDS ?? 1800) * 1000;

async function must(argv: string[], cwd?: string): Promise<void> {
  const r = await run(argv, { cwd, timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
}

mkdirSync(debs, { recursive: true });
for (const pkg of ["unattended-upgrades", "python3-distro-info"]) {
  if (!readdirSync(debs).some((n) => n.startsWith(`${pkg}_`))) await must(["apt-get", "download", pkg], debs);
}
if (!existsSync(join(unpacked, "usr/bin/unattended-upgrade"))) {
  for (const d of readdirSync(debs).filter((n) => n.endsWith(".deb"))) await must(["dpkg-deb", "-x", join(debs, d), unpacked]);
}
mkdirSync(join(dir, "log"), { recursive: true });
const conf = join(dir, "security-only.conf");
/** unattended-upgrades' own variable, expanded by it: the host's codename. */
const CODENAME = ["$", "{distro_codename}"].join("");
writeFileSync(
  conf,
  [
    "Unattended-Upgrade::Origins-Pattern {",
    `  "origin=Debian,codename=${CODENAME},label=Debian-Security";`,
    `  "origin=Debian,codename=${CODENAME}-security,label=Debian-Security";`,
    "};",
    'Unattended-Upgrade::DevRelease "false";',
    `Unattended-Upgrade::LogDir "${join(dir, "log")}";`,
    'Debug::NoLocking "true";',
    "",
  ].join("\n"),
);

const started = performance.now();
const uu = Bun.spawn(["/usr/bin/python3", join(unpacked, "usr/bin/unattended-upgrade"), "--dry-run", "--debug"], {
  env: { ...process.env, APT_CONFIG: conf, PYTHONPATH: join(unpacked, "usr/lib/python3/dist-packages"), LC_ALL: "C" },
  stdout: "pipe",
  stderr: "pipe",
});
const timer = setTimeout(() => uu.kill("SIGKILL"), timeoutMs);
const chosen: string[] = [];
let inList = false;
let buffered = "";
const decoder = new TextDecoder();
const reader = uu.stdout.getReader();
outer: for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  buffered += decoder.decode(value, { stream: true });
  let nl = buffered.indexOf("\n");
  while (nl !== -1) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    const head = "pkgs that look like they should be upgraded: ";
    if (line.startsWith(head)) {
      inList = true;
      chosen.push(...line.slice(head.length).split(/\s+/).filter(Boolean));
    } else if (inList) {
      if (/^[a-z0-9][a-z0-9+.-]*$/.test(line)) chosen.push(line);
      else break outer;
    }
    nl = buffered.indexOf("\n");
  }
}
uu.kill();
clearTimeout(timer);
await uu.exited;
const uuSeconds = (performance.now() - started) / 1000;
if (!inList) throw new Error(`unattended-upgrade printed no list within ${uuSeconds.toFixed(0)} s: ${await new Response(uu.stderr).text()}`);

const r = await aptChecker.check({ paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs: 60_000, commandTimeoutMs: 600_000 });
const packages = r.reasons.filter((x): x is PackageReason => x.kind === "package");
const ours = new Set(packages.filter((p) => p.security).map((p) => p.name));
const theirs = new Set(chosen);
console.log(
  JSON.stringify(
    {
      bench: "status-agreement",
      upgradable: packages.length,
      autopod_security: ours.size,
      unattended_upgrades_security_only: theirs.size,
      only_autopod: [...ours].filter((x) => !theirs.has(x)).sort(),
      only_unattended_upgrades: [...theirs].filter((x) => !ours.has(x)).sort(),
      security_older_than_candidate: packages
        .filter((p) => p.security && p.security_version !== p.candidate)
        .map((p) => `${p.name} ${p.installed} -> ${p.candidate} (fix ${p.security_version})`),
      unattended_upgrades_seconds: Math.round(uuSeconds),
    },
    null,
    2,
  ),
);
