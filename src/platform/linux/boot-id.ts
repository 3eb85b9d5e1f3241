/** This boot's random id: it changes with every boot, so an agent can tell a reboot from its own restart. */
import { readFileSync } from "node:fs";

export function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}
