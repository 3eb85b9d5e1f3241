/**
 * Shared helpers for tests that need root, CRIU or several hosts. They never
 * skip silently: `rootTest()` prints why before skipping. Loading this module
 * builds dist/autopod when it is missing or older than the sources, so the
 * tests never run a stale binary.
 */
import { test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "..");
export const BUN = resolve(REPO, "node_modules/.bin/bun");
export const DIST = resolve(REPO, "dist/autopod");

export const isRoot = process.getuid?.() === 0;

/** The newest modification time (ms) of the files dist/autopod is built from. */
export function newestSourceMtime(repo = REPO): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  walk(join(repo, "src"));
  for (const f of ["build.ts", "package.json", "package-lock.json"]) {
    if (existsSync(join(repo, f))) newest = Math.max(newest, statSync(join(repo, f)).mtimeMs);
  }
  return newest;
}

/** Why `dist` is not a build of the current sources, or null when it is. */
export function whyStale(dist = DIST, repo = REPO): string | null {
  if (!existsSync(dist)) return `${dist} does not exist`;
  const built = statSync(dist).mtimeMs;
  const newest = newestSourceMtime(repo);
  return newest > built
    ? `${dist} is older than the sources (built ${new Date(built).toISOString()}, a source changed ${new Date(newest).toISOString()})`
    : null;
}

/** Build dist/autopod (once per test process) when it is missing or stale; throw if the build fails. */
export function ensureBuilt(): void {
  const why = whyStale();
  if (why === null) return;
  console.warn(`building dist/autopod: ${why}`);
  const r = Bun.spawnSync([BUN, resolve(REPO, "build.ts")], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`Building dist/autopod failed (exit ${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
  const still = whyStale();
  if (still !== null) throw new Error(`dist/autopod is still stale after building: ${still}`);
}

if (!process.env.AUTOPOD_TEST_FROM_SOURCE) ensureBuilt();

/** `test` when running as root; otherwise a skipped test whose reason is printed. */
export function rootTest(name: string, fn: () => unknown | Promise<unknown>, timeoutMs?: number): void {
  if (isRoot) {
    test(name, fn as () => Promise<void>, timeoutMs);
  } else {
    console.warn(`SKIP "${name}": needs root (namespaces, mounts, CRIU); run the tests as root`);
    test.skip(name, fn as () => Promise<void>);
  }
}

/** The autopod CLI to test: the compiled binary (built fresh on load), or the sources under Bun with AUTOPOD_TEST_FROM_SOURCE=1. */
export function autopodArgv(): string[] {
  return process.env.AUTOPOD_TEST_FROM_SOURCE ? [BUN, resolve(REPO, "src/main.ts")] : [DIST];
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run the autopod CLI with an argument array and collect its output. */
export async function autopod(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const proc = Bun.spawn([...autopodArgv(), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, ...opts.env } as Record<string, string>,
    cwd: opts.cwd,
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

/**
 * Run the autopod CLI on a pseudo-terminal (util-linux `script`), as a person
 * at a terminal would: stdout and stderr are the terminal, and `output` is
 * everything drawn on it (control codes included; the terminal turns "\n"
 * into "\r\n"). `script` takes one command string: each argument is
 * single-quoted, so no argument is ever read by the shell.
 */
export async function autopodInTerminal(
  args: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<{ exitCode: number; output: string }> {
  const command = [...autopodArgv(), ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const proc = Bun.spawn(["script", "-qfec", command, "/dev/null"], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, TERM: "xterm", COLUMNS: "120", ...opts.env } as Record<string, string>,
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  const [output, , exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { exitCode, output };
}
