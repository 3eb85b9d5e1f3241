/**
 * Where the checks look. Every path is injectable so tests can build a fake
 * host in a temporary directory.
 */
import { join } from "node:path";

export interface HostPaths {
  /** Root of the inspected system: package databases, /etc, /var, /lib/modules. */
  root: string;
  /** procfs of the running system. */
  proc: string;
  /** sysfs of the running system. */
  sys: string;
  /** Kernel images. */
  boot: string;
  /** Runtime state: reboot sentinels. */
  run: string;
}

/** Default paths of this host, with any of them overridden; boot and run follow root. */
export function hostPaths(overrides: Partial<HostPaths> = {}): HostPaths {
  const root = overrides.root ?? "/";
  return {
    root,
    proc: overrides.proc ?? "/proc",
    sys: overrides.sys ?? "/sys",
    boot: overrides.boot ?? join(root, "boot"),
    run: overrides.run ?? join(root, "run"),
  };
}

/** A path of the inspected system, under its root. */
export function inRoot(paths: HostPaths, path: string): string {
  return join(paths.root, path);
}
