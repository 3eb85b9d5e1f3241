/**
 * Shared helpers for tests that need root, CRIU or several hosts. They never
 * skip silently: `needsRoot()` prints why before skipping.
 */
import { test } from "bun:test";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "..");
export const BUN = resolve(REPO, "node_modules/.bin/bun");
export const DIST = resolve(REPO, "dist/autopod");

export const isRoot = process.getuid?.() === 0;

/** `test` when running as root; otherwise a skipped test whose reason is printed. */
export function rootTest(name: string, fn: () => unknown | Promise<unknown>, timeoutMs?: number): void {
  if (isRoot) {
    test(name, fn as () => Promise<void>, timeoutMs);
  } else {
    console.warn(`SKIP "${name}": needs root (namespaces, mounts, CRIU); run the tests as root`);
    test.skip(name, fn as () => Promise<void>);
  }
}

/** The autopod CLI to test: the compiled binary when built, else the sources under Bun. */
export function autopodArgv(): string[] {
  return existsSync(DIST) && !process.env.AUTOPOD_TEST_FROM_SOURCE ? [DIST] : [BUN, resolve(REPO, "src/main.ts")];
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
