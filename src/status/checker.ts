/**
 * The Checker interface: one small, swappable check of the host's patch
 * status, and the typed reasons it gives for its verdict.
 */
import type { RunOptions, RunResult } from "../platform/linux/exec.ts";
import type { HostPaths } from "./host-paths.ts";
import type { Verdict } from "./verdict.ts";

/** Runs an external program from an argument array (platform/linux/exec.ts `run`). */
export type Runner = (argv: string[], opts?: RunOptions) => Promise<RunResult>;

/** Everything a check may touch, injectable so tests can point it at fixtures. */
export interface CheckOptions {
  paths: HostPaths;
  run: Runner;
  /** Finds a program on the host; null when it is not installed. */
  which: (name: string) => string | null;
  /** Give up waiting for the package manager's lock after this many milliseconds. */
  lockTimeoutMs: number;
  /** Kill a package-manager query that runs longer than this. */
  commandTimeoutMs: number;
  /** Where a check may keep its last answer to reuse while its inputs are unchanged (apt); none when absent. */
  cacheDir?: string;
}

export interface Checker {
  /** Stable name, used as the `check` key in JSON and Prometheus. */
  name: string;
  /** Where the check's data comes from, for humans. */
  source: string;
  check(opts: CheckOptions): Promise<CheckResult>;
}

export interface CheckResult {
  verdict: Verdict;
  /** One line for the human table. */
  summary: string;
  reasons: Reason[];
  /** Overrides the checker's source when the check learned it at run time (e.g. dnf or yum). */
  source?: string;
  /** Set when the verdict is "error". */
  error?: string;
}

/** A pending package update. */
export interface PackageReason {
  kind: "package";
  name: string;
  arch?: string;
  installed: string;
  candidate: string;
  security: boolean;
  /**
   * The version that fixes the security issue, when security is true: the
   * candidate, or an older version from a security archive when the
   * candidate comes from elsewhere (a point release that carries the fix).
   */
  security_version?: string;
  /** Where the candidate comes from, as the package manager names it (e.g. "Debian-Security:12/oldstable-security"). */
  origins: string[];
}

/** A file that says something about the host, such as a reboot sentinel. */
export interface FileReason {
  kind: "file";
  path: string;
  detail?: string;
}

/** A file a process maps that was deleted, or replaced by another file at its path. */
export interface ReplacedFile {
  path: string;
  change: "deleted" | "replaced";
  /** The package that owns the file now (dpkg hosts), when one does. */
  package?: string;
  /** The interpreter that runs this source file; absent for mapped executables and libraries. */
  loaded_by?: "python" | "perl" | "ruby";
}

/** A process that runs replaced code. */
export interface ProcessReason {
  kind: "process";
  pid: number;
  command: string;
  unit?: string;
  pod?: string;
  files: ReplacedFile[];
}

/** Processes running replaced code, grouped by systemd unit or pod. */
export interface GroupReason {
  kind: "group";
  group: "unit" | "pod" | "other";
  name: string;
  pids: number[];
}

/** A newer kernel installed than the one running. */
export interface KernelReason {
  kind: "kernel";
  /** A new release, or the same release rebuilt (an ABI-compatible update). */
  change: "version_upgrade" | "abi_rebuild";
  running: string;
  installed: string;
  /** The build strings (`uname -v` and the image's), given for an ABI-only rebuild. */
  running_build?: string;
  installed_build?: string;
  image: string;
}

/** A package-manager lock someone holds. */
export interface LockReason {
  kind: "lock";
  path: string;
  pid?: number;
  command?: string;
}

/** A live patch loaded into the running kernel. */
export interface LivepatchReason {
  kind: "livepatch";
  name: string;
  enabled: boolean;
  in_transition: boolean;
}

export interface NoteReason {
  kind: "note";
  message: string;
}

export type Reason = PackageReason | FileReason | ProcessReason | GroupReason | KernelReason | LockReason | LivepatchReason | NoteReason;

/** The result of a check that does not apply to this host. */
export function notApplicable(summary: string): CheckResult {
  return { verdict: "not_applicable", summary, reasons: [] };
}

/** The result of a check that could not reach a verdict. */
export function failed(error: string, reasons: Reason[] = []): CheckResult {
  return { verdict: "error", summary: error, reasons, error };
}
