#!/usr/bin/env bun
/**
 * Figures for "the binary carries CRIU": the binary's size with and without its CRIU bundle, the bundle packed and
 * unpacked, `autopod version` start-to-exit with and without it, and on bare Debian 12 and 13 roots (no network, no
 * CRIU; test/_bare-host.ts) the time from `install.sh --from-file` to a passing `autopod doctor`.
 * Usage (root, after `bash scripts/install-criu.sh --bundle .cache/criu-bundle`): bun bench/install.ts
 * Environment: RUNS (default 3) runs per root.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BARE_SCRIPT, bareRoot, onBareRoot, type Suite } from "../test/_bare-host.ts";
import { summary, timeProcess } from "./_stats.ts";

const repo = resolve(import.meta.dir, "..");
const runs = Number(process.env.RUNS ?? 3);
const dir = mkdtempSync(join(tmpdir(), "autopod-bench-install-"));
try {
  const build = (out: string, ...flags: string[]) => {
    const r = Bun.spawnSync([process.execPath, join(repo, "build.ts"), "--outfile", out, ...flags], { cwd: repo, stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`build.ts ${flags.join(" ")} failed: ${r.stderr.toString()}`);
    return r.stderr.toString();
  };
  const withCriu = join(dir, "with");
  const without = join(dir, "without");
  const log = build(withCriu, "--require-criu");
  build(without, "--no-criu");
  const packed = /packed ([\d.]+) MiB/.exec(log)?.[1];
  const unpacked = /files, ([\d.]+) MiB/.exec(log)?.[1];

  const startMs = (bin: string) => {
    for (let i = 0; i < 3; i++) timeProcess([bin, "version"]);
    return summary(Array.from({ length: 20 }, () => timeProcess([bin, "version"], {})));
  };

  const installToDoctor: Record<string, unknown> = {};
  for (const suite of ["bookworm", "trixie"] as Suite[]) {
    const root = bareRoot(suite);
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await onBareRoot(root, `BARE_ONLY_INSTALL=1\n${BARE_SCRIPT}`, [
        [withCriu, "/root/autopod"],
        [join(repo, "install.sh"), "/root/install.sh"],
      ]);
      if (r.out["doctor.rc"]?.trim() !== "0") throw new Error(`${suite}: doctor did not pass: ${r.stderr}\n${r.out["install.log"] ?? ""}`);
      ms.push(Number(r.out["install-to-doctor.ms"]));
    }
    installToDoctor[suite] = summary(ms);
  }

  console.log(
    JSON.stringify(
      {
        bench: "install",
        host: { kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(), cpus: navigator.hardwareConcurrency },
        binary_bytes_with_criu: Bun.file(withCriu).size,
        binary_bytes_without_criu: Bun.file(without).size,
        criu_bundle_added_bytes: Bun.file(withCriu).size - Bun.file(without).size,
        criu_bundle_packed_mib: Number(packed),
        criu_bundle_unpacked_mib: Number(unpacked),
        version_start_to_exit_ms: { with_criu: startMs(withCriu), without_criu: startMs(without) },
        install_from_file_to_passing_doctor_ms: installToDoctor,
        install_to_doctor_target_ms: 5000,
      },
      null,
      2,
    ),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
