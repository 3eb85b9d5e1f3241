/** The CPU's feature flags, as /proc/cpuinfo lists them. */
import { readFileSync } from "node:fs";

/** The flags line of /proc/cpuinfo (or of the text given), sorted. */
export function cpuFlags(cpuinfo = readFileSync("/proc/cpuinfo", "utf8")): string[] {
  const m = /^flags\s*:\s*(.*)$/m.exec(cpuinfo);
  return m ? m[1]!.trim().split(/\s+/).sort() : [];
}
