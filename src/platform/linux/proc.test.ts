import { expect, test } from "bun:test";
import { parseProcStat, readProcStat } from "./proc.ts";

// Captured on Linux 6.18 (cat reading its own stat).
const CAT =
  "28712 (cat) R 28710 28710 14303 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 62051 3133440 389 18446744073709551615 94596518252544 94596518272425 140737129832992 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94596518288432 94596518290048 94597088870400 140737129839331 140737129839351 140737129839351 140737129840619 0\n";
// A zombie killed by SIGKILL: exit status 9 in field 52.
const ZOMBIE =
  "4242 (we (ird) name) Z 1 4242 4242 0 -1 4227332 0 0 0 0 0 0 0 0 20 0 1 0 99999 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 9\n";

test("parses a running process", () => {
  expect(parseProcStat(CAT)).toEqual({ pid: 28712, comm: "cat", state: "R", ppid: 28710, startTime: 62051, exitStatus: 0 });
});

test("a command name with spaces and parentheses", () => {
  const s = parseProcStat(ZOMBIE);
  expect(s.comm).toBe("we (ird) name");
  expect(s.state).toBe("Z");
  expect(s.startTime).toBe(99999);
  expect(s.exitStatus).toBe(9);
});

test("reads this process and misses a pid that does not exist", () => {
  expect(readProcStat(process.pid)?.pid).toBe(process.pid);
  expect(readProcStat(0x3ffffff)).toBeNull();
});
