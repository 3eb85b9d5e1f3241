/**
 * collectStatus: run every check and build the report. The CLI calls it
 * directly; the agent calls it on its schedule and serves the result. It
 * knows nothing of either.
 */
import { hostname } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import { run as defaultRun, which as defaultWhich } from "../platform/linux/exec.ts";
import { apkChecker } from "./apk.ts";
import { aptChecker } from "./apt.ts";
import type { Checker, CheckOptions, Runner } from "./checker.ts";
import { dnfChecker } from "./dnf.ts";
import { type HostPaths, hostPaths } from "./host-paths.ts";
import { kernelChecker } from "./kernel.ts";
import { rebootChecker } from "./reboot.ts";
import { replacedCodeChecker } from "./replaced-code.ts";
import { buildReport, type CheckReport, type StatusReport } from "./report.ts";

/** Every check, in report order. The package managers the host lacks report not_applicable. */
export const DEFAULT_CHECKERS: readonly Checker[] = [aptChecker, dnfChecker, apkChecker, rebootChecker, kernelChecker, replacedCodeChecker];

export interface CollectOptions {
  /** Paths to inspect instead of this host's (tests, a mounted image). */
  paths?: Partial<HostPaths>;
  /** Give up on a held package-manager lock after this long (config: status.lock_timeout_seconds). Default 10 s. */
  lockTimeoutMs?: number;
  /** Kill a package-manager query after this long. Default 120 s. */
  commandTimeoutMs?: number;
  /** Where checks keep answers to reuse while their inputs are unchanged (statusCacheDir); no cache when absent. */
  cacheDir?: string;
  checkers?: readonly Checker[];
  run?: Runner;
  which?: (name: string) => string | null;
  host?: string;
  /** Aborting it kills the commands the checks run (the agent is stopping). */
  signal?: AbortSignal;
}

/** Where the CLI and the agent keep the status checks' answers: under the state directory, root's alone. */
export function statusCacheDir(stateDir: string): string {
  return join(stateDir, "cache", "status");
}

/** Run one check, timing it; a check that throws becomes an "error" verdict. */
export async function runCheck(checker: Checker, opts: CheckOptions): Promise<CheckReport> {
  const started = performance.now();
  let result;
  try {
    result = await checker.check(opts);
  } catch (e) {
    result = { verdict: "error" as const, summary: errorMessage(e), reasons: [], error: errorMessage(e) };
  }
  return {
    check: checker.name,
    source: result.source ?? checker.source,
    verdict: result.verdict,
    summary: result.summary,
    reasons: result.reasons,
    ...(result.error !== undefined ? { error: result.error } : {}),
    duration_ms: Math.round((performance.now() - started) * 10) / 10,
  };
}

/** The runner, with every command it runs killed when `signal` aborts. */
function cancellable(run: Runner, signal: AbortSignal | undefined): Runner {
  return signal ? (argv, o) => run(argv, { ...o, signal }) : run;
}

/** Run the checks concurrently and report on the host. */
export async function collectStatus(opts: CollectOptions = {}): Promise<StatusReport> {
  const checkedAt = new Date();
  const started = performance.now();
  const checkOpts: CheckOptions = {
    paths: hostPaths(opts.paths),
    run: cancellable(opts.run ?? defaultRun, opts.signal),
    which: opts.which ?? ((name) => defaultWhich(name)),
    lockTimeoutMs: opts.lockTimeoutMs ?? 10_000,
    commandTimeoutMs: opts.commandTimeoutMs ?? 120_000,
    ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
  };
  const checks = await Promise.all((opts.checkers ?? DEFAULT_CHECKERS).map((c) => runCheck(c, checkOpts)));
  return buildReport(opts.host ?? hostname(), checkedAt, performance.now() - started, checks);
}
