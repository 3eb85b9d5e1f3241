#!/usr/bin/env bun
/**
 * Compile autopod into one self-contained executable, dist/autopod, with its
 * version and git commit embedded. Usage: bun build.ts [--outfile PATH]
 */
import { mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import pkg from "./package.json" with { type: "json" };

const args = process.argv.slice(2);
const outIdx = args.indexOf("--outfile");
const outfile = resolve(outIdx >= 0 && args[outIdx + 1] ? args[outIdx + 1]! : "dist/autopod");

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { stderr: "ignore" });
  if (r.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { stderr: "ignore" });
  return r.stdout.toString().trim() + (dirty.exitCode === 0 && dirty.stdout.toString().trim() ? "-dirty" : "");
}

const commit = process.env.AUTOPOD_COMMIT ?? gitCommit();
mkdirSync(dirname(outfile), { recursive: true });
const tmp = `${outfile}.tmp-${process.pid}`;
const started = performance.now();
const result = await Bun.build({
  entrypoints: ["src/main.ts"],
  compile: { outfile: tmp },
  minify: true,
  bytecode: true,
  define: {
    AUTOPOD_BUILD_VERSION: JSON.stringify(pkg.version),
    AUTOPOD_BUILD_COMMIT: JSON.stringify(commit),
  },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  rmSync(tmp, { force: true });
  process.exit(1);
}
renameSync(tmp, outfile);
const size = Bun.file(outfile).size;
console.error(`built ${outfile} (${(size / 1048576).toFixed(1)} MiB, version ${pkg.version}, commit ${commit}) in ${Math.round(performance.now() - started)} ms`);
