#!/usr/bin/env bun
/**
 * Figures for the foundation issue: `autopod version` start-to-exit time, the
 * binary's size, and install-criu.sh when CRIU is already good.
 * Usage: bun bench/foundation.ts   (after `bun build.ts`; as root for CRIU)
 */
import { resolve } from "node:path";
import { summary, timeProcess } from "./_stats.ts";

const repo = resolve(import.meta.dir, "..");
const dist = resolve(repo, "dist/autopod");
const runs = Number(process.env.RUNS ?? 30);

for (let i = 0; i < 3; i++) timeProcess([dist, "version"]); // warm the page cache
const version = Array.from({ length: runs }, () => timeProcess([dist, "version"], {}));
const criuFast = Array.from({ length: 10 }, () => timeProcess(["bash", resolve(repo, "scripts/install-criu.sh")]));
// REBUILD_CRIU=1: also time a from-source build (--force): the fresh-machine path, less installing build dependencies.
const criuRebuildMs = process.env.REBUILD_CRIU === "1" ? timeProcess(["bash", resolve(repo, "scripts/install-criu.sh"), "--force"]) : null;

console.log(
  JSON.stringify(
    {
      bench: "foundation",
      host: { kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(), cpus: navigator.hardwareConcurrency },
      version_start_to_exit_ms: summary(version),
      version_target_ms: 50,
      binary_bytes: Bun.file(dist).size,
      install_criu_already_good_ms: summary(criuFast),
      install_criu_build_from_source_ms: criuRebuildMs === null ? "not measured (set REBUILD_CRIU=1)" : Math.round(criuRebuildMs),
    },
    null,
    2,
  ),
);
