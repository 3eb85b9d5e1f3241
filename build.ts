#!/usr/bin/env bun
/**
 * Compile autopod into one self-contained executable, dist/autopod, with its
 * version and git commit embedded, and the native 16-lane SHA-256
 * (src/native/sha256x16.c, compiled here with gcc into
 * .cache/native/libsha256x16.so, where runs from the source tree find it).
 * Without gcc the binary hashes with Bun's SHA-256 alone (same digests).
 * Also the pod's small static init (src/native/pod-init.c, into
 * .cache/native/pod-init), embedded the same way; without gcc, pods start
 * through nsenter, unshare and the autopod binary itself (slower).
 * Usage: bun build.ts [--outfile PATH]
 */
import { mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import pkg from "./package.json" with { type: "json" };

const args = process.argv.slice(2);
const outIdx = args.indexOf("--outfile");
const outfile = resolve(outIdx >= 0 && args[outIdx + 1] ? args[outIdx + 1]! : "dist/autopod");

/** The checkout's commit (with -dirty for local changes); "unknown" outside git or without it. */
function gitCommit(): string {
  const git = Bun.which("git");
  if (!git) return "unknown";
  const r = Bun.spawnSync([git, "rev-parse", "--short=12", "HEAD"], { stderr: "ignore" });
  if (r.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync([git, "status", "--porcelain", "--untracked-files=no"], { stderr: "ignore" });
  return r.stdout.toString().trim() + (dirty.exitCode === 0 && dirty.stdout.toString().trim() ? "-dirty" : "");
}

/** The native SHA-256 library, compiled; base64 of it, or "" when there is no C compiler. */
function nativeSha256(): string {
  const out = resolve(import.meta.dir, ".cache/native/libsha256x16.so");
  mkdirSync(dirname(out), { recursive: true });
  const cc = Bun.which("gcc") ?? Bun.which("cc");
  if (!cc) {
    console.error("build: no C compiler (gcc): the binary hashes with Bun's SHA-256 only (about half as fast on AVX-512 CPUs)");
    return "";
  }
  const tmpLib = `${out}.tmp-${process.pid}`;
  const r = Bun.spawnSync([cc, "-O3", "-shared", "-fPIC", "-Wall", "-Werror", "-o", tmpLib, resolve(import.meta.dir, "src/native/sha256x16.c")], {
    stderr: "pipe",
  });
  if (r.exitCode !== 0) {
    console.error(`build: compiling src/native/sha256x16.c failed:\n${r.stderr.toString()}`);
    process.exit(1);
  }
  renameSync(tmpLib, out);
  return readFileSync(out).toString("base64");
}

/** The pod's static init, compiled; base64 of it, or "" when there is no C compiler. */
function nativePodInit(): string {
  const out = resolve(import.meta.dir, ".cache/native/pod-init");
  mkdirSync(dirname(out), { recursive: true });
  const cc = Bun.which("gcc") ?? Bun.which("cc");
  if (!cc) {
    console.error("build: no C compiler (gcc): pods start through nsenter, unshare and autopod itself (slower)");
    return "";
  }
  const tmp = `${out}.tmp-${process.pid}`;
  const r = Bun.spawnSync([cc, "-O2", "-static", "-s", "-Wall", "-Wextra", "-Werror", "-o", tmp, resolve(import.meta.dir, "src/native/pod-init.c")], {
    stderr: "pipe",
  });
  if (r.exitCode !== 0) {
    console.error(`build: compiling src/native/pod-init.c failed (a static build needs libc6-dev):\n${r.stderr.toString()}`);
    process.exit(1);
  }
  renameSync(tmp, out);
  return readFileSync(out).toString("base64");
}

/**
 * The hashing threads' code (src/store/chunk-workers.ts starts them): an
 * entrypoint of its own, since a Worker in a compiled binary can load only
 * those, by their path under the entrypoints' common folder (src/). In the
 * binary, import.meta.url still names the source file, so chunk-workers.ts
 * is told this path instead (AUTOPOD_CHUNK_THREAD).
 */
const CHUNK_THREAD = "src/store/chunk-thread.ts";
/** The thread that sleeps until a pod's process exits (src/platform/linux/exit-watch.ts starts it), the same way. */
const EXIT_WATCH_THREAD = "src/platform/linux/exit-watch-thread.ts";

const commit = process.env.AUTOPOD_COMMIT ?? gitCommit();
const sha256x16 = nativeSha256();
const podInit = nativePodInit();
mkdirSync(dirname(outfile), { recursive: true });
const tmp = `${outfile}.tmp-${process.pid}`;
const started = performance.now();
const result = await Bun.build({
  entrypoints: ["src/main.ts", CHUNK_THREAD, EXIT_WATCH_THREAD],
  compile: { outfile: tmp },
  minify: true,
  bytecode: true,
  define: {
    AUTOPOD_BUILD_VERSION: JSON.stringify(pkg.version),
    AUTOPOD_BUILD_COMMIT: JSON.stringify(commit),
    AUTOPOD_SHA256X16: JSON.stringify(sha256x16),
    AUTOPOD_POD_INIT: JSON.stringify(podInit),
    AUTOPOD_CHUNK_THREAD: JSON.stringify(`./${CHUNK_THREAD.slice("src/".length)}`),
    AUTOPOD_EXIT_WATCH_THREAD: JSON.stringify(`./${EXIT_WATCH_THREAD.slice("src/".length)}`),
  },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  rmSync(tmp, { force: true });
  process.exit(1);
}
renameSync(tmp, outfile);
const size = Bun.file(outfile).size;
console.error(
  `built ${outfile} (${(size / 1048576).toFixed(1)} MiB, version ${pkg.version}, commit ${commit}) in ${Math.round(performance.now() - started)} ms`,
);
