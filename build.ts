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
 * It also carries CRIU: the bundle `scripts/install-criu.sh --bundle .cache/criu-bundle` builds (criu and its
 * libraries but glibc's), packed with zstd into .cache/criu-bundle.zst (cached) and embedded; `autopod criu install`
 * unpacks it on a host. Without that bundle the binary carries no CRIU, and this says so.
 * Usage: bun build.ts [--outfile PATH] [--no-criu | --require-criu]   (--require-criu: fail rather than build without CRIU)
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import pkg from "./package.json" with { type: "json" };
import { packBundle } from "./src/platform/linux/criu-bundle-format.ts";

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
 * those, by their path under the build's root (this folder, set below). In the
 * binary, import.meta.url still names the source file, so chunk-workers.ts
 * is told this path instead (AUTOPOD_CHUNK_THREAD).
 */
const CHUNK_THREAD = "src/store/chunk-thread.ts";
/** The thread that sleeps until a pod's process exits (src/platform/linux/exit-watch.ts starts it), the same way. */
const EXIT_WATCH_THREAD = "src/platform/linux/exit-watch-thread.ts";

/** The GitID a build with scripts/criu-patches/ prints (as src/criu-installer.ts computes it). */
function criuPatchSetGitId(): string {
  const dir = resolve(import.meta.dir, "scripts/criu-patches");
  const h = new Bun.CryptoHasher("sha256");
  for (const name of readdirSync(dir)
    .filter((n) => n.endsWith(".patch"))
    .sort())
    h.update(readFileSync(join(dir, name)));
  return `autopod-${h.digest("hex").slice(0, 12)}`;
}

/**
 * The CRIU bundle, packed: its path (.cache/criu-bundle.zst, embedded as a file the binary finds in Bun.embeddedFiles),
 * or "" when .cache/criu-bundle is missing or stale. (As a define of base64 it would cost twice its size: source and bytecode.)
 */
function criuBundle(): string {
  const dir = resolve(import.meta.dir, ".cache/criu-bundle");
  const how = "build it with `bash scripts/install-criu.sh --bundle .cache/criu-bundle` (as root; scripts/test.sh does)";
  if (args.includes("--no-criu")) {
    console.error("build: --no-criu: the binary carries no CRIU");
    return "";
  }
  if (!existsSync(join(dir, ".autopod-bundle")) || !existsSync(join(dir, "bin/criu"))) {
    console.error(`build: no CRIU bundle in .cache/criu-bundle: the binary carries no CRIU; ${how}`);
    return "";
  }
  const r = Bun.spawnSync([join(dir, "bin/criu"), "--version"], { stderr: "pipe" });
  const out = r.stdout.toString();
  const version = /^Version:\s*(\S+)/m.exec(out)?.[1];
  const gitId = /^GitID:\s*(\S+)/m.exec(out)?.[1];
  if (r.exitCode !== 0 || !version || !gitId) {
    console.error(`build: .cache/criu-bundle/bin/criu --version fails (${r.stderr.toString().trim()}): the binary carries no CRIU; ${how}`);
    return "";
  }
  if (gitId !== criuPatchSetGitId()) {
    console.error(`build: the CRIU bundle was built with other patches (${gitId}, ${criuPatchSetGitId()} expected): the binary carries no CRIU; ${how}`);
    return "";
  }
  const files: Array<{ path: string; mode: number; bytes: Uint8Array }> = [];
  for (const sub of ["bin", "lib"]) {
    for (const name of readdirSync(join(dir, sub)).sort()) {
      const p = join(dir, sub, name);
      files.push({ path: `${sub}/${name}`, mode: statSync(p).mode & 0o111 ? 0o755 : 0o644, bytes: readFileSync(p) });
    }
  }
  // Packing (zstd -19) takes seconds: reuse the last one while the bundle is the same.
  const key = new Bun.CryptoHasher("sha256");
  for (const f of files) key.update(`${f.path}\0${f.mode}\0`).update(f.bytes);
  const keyHex = key.digest("hex");
  const packed = resolve(import.meta.dir, ".cache/criu-bundle.zst");
  let blob: Uint8Array;
  if (existsSync(packed) && existsSync(`${packed}.key`) && readFileSync(`${packed}.key`, "utf8") === keyHex) {
    blob = readFileSync(packed);
  } else {
    blob = packBundle({ criuVersion: version, gitId }, files);
    writeFileSync(`${packed}.tmp`, blob);
    renameSync(`${packed}.tmp`, packed);
    writeFileSync(`${packed}.key`, keyHex);
  }
  const unpacked = files.reduce((n, f) => n + f.bytes.length, 0);
  console.error(
    `build: carries CRIU ${version} (${gitId}): ${files.length} files, ${(unpacked / 1048576).toFixed(1)} MiB, packed ${(blob.length / 1048576).toFixed(1)} MiB`,
  );
  return packed;
}

const commit = process.env.AUTOPOD_COMMIT ?? gitCommit();
const sha256x16 = nativeSha256();
const podInit = nativePodInit();
const criu = criuBundle();
if (!criu && args.includes("--require-criu")) {
  console.error("build: --require-criu: no usable CRIU bundle (see above)");
  process.exit(1);
}
mkdirSync(dirname(outfile), { recursive: true });
const tmp = `${outfile}.tmp-${process.pid}`;
const started = performance.now();
const result = await Bun.build({
  entrypoints: ["src/main.ts", CHUNK_THREAD, EXIT_WATCH_THREAD, ...(criu ? [criu] : [])],
  // Entry points are found by their path under this folder (with or without the CRIU bundle from .cache/).
  root: import.meta.dir,
  // Embedded files keep their names (src/platform/linux/criu-embedded.ts looks for "criu-bundle.zst").
  naming: { asset: "[name].[ext]" },
  compile: { outfile: tmp },
  minify: true,
  bytecode: true,
  define: {
    AUTOPOD_BUILD_VERSION: JSON.stringify(pkg.version),
    AUTOPOD_BUILD_COMMIT: JSON.stringify(commit),
    AUTOPOD_SHA256X16: JSON.stringify(sha256x16),
    AUTOPOD_POD_INIT: JSON.stringify(podInit),
    AUTOPOD_CRIU_BUNDLE: JSON.stringify(criu ? "criu-bundle.zst" : ""),
    AUTOPOD_CHUNK_THREAD: JSON.stringify(`./${CHUNK_THREAD}`),
    AUTOPOD_EXIT_WATCH_THREAD: JSON.stringify(`./${EXIT_WATCH_THREAD}`),
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
