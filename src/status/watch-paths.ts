/**
 * The files whose change means the status may have changed: package
 * databases and lists, reboot sentinels, kernel images. The agent watches
 * them to refresh the report when the package database changes.
 */
import { join } from "node:path";
import { type HostPaths, inRoot } from "./host-paths.ts";

export function statusWatchPaths(paths: HostPaths): string[] {
  return [
    inRoot(paths, "var/lib/dpkg/status"),
    inRoot(paths, "var/lib/apt/lists"),
    inRoot(paths, "var/lib/rpm"),
    inRoot(paths, "usr/lib/sysimage/rpm"),
    inRoot(paths, "lib/apk/db/installed"),
    join(paths.run, "reboot-required"),
    inRoot(paths, "var/run/reboot-needed"),
    paths.boot,
  ];
}
