/**
 * The time the update windows read. The system clock, or for tests a file
 * holding an ISO 8601 time that advances in real time from when the file was
 * last written (so a test can move the host to just before a window opens).
 */
import { readFileSync, statSync } from "node:fs";

export interface WallClock {
  now(): number;
}

export const systemWallClock: WallClock = { now: () => Date.now() };

/** For tests only (policy.test_clock_file): the file's time plus the real time since it was written; the system's when it is missing or unreadable. */
export function fileWallClock(path: string): WallClock {
  return {
    now: () => {
      try {
        const set = Date.parse(readFileSync(path, "utf8").trim());
        const written = statSync(path).mtimeMs;
        return Number.isNaN(set) ? Date.now() : set + Math.max(0, Date.now() - written);
      } catch {
        return Date.now();
      }
    },
  };
}
