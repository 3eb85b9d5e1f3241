import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processesOutsideTree, processTree } from "./pod-procs.ts";

const proc = mkdtempSync(join(tmpdir(), "autopod-fakeproc-"));
afterAll(() => rmSync(proc, { recursive: true, force: true }));

/** A fake /proc entry: its pid namespace, state, parent and command line. */
function fake(pid: number, ns: string, state: string, ppid: number, cmd: string[]) {
  mkdirSync(join(proc, String(pid), "ns"), { recursive: true });
  symlinkSync(`pid:[${ns}]`, join(proc, String(pid), "ns", "pid"));
  writeFileSync(join(proc, String(pid), "stat"), `${pid} (${cmd[0]} (x)) ${state} ${ppid} 1 1 0`);
  writeFileSync(join(proc, String(pid), "cmdline"), cmd.join("\0") + "\0");
}
fake(5, "host", "S", 1, ["autopod"]); // the agent
fake(10, "pod", "S", 5, ["sh", "-c", "loop"]); // the pod's pid 1
fake(11, "pod", "S", 10, ["sleep", "0.02"]);
fake(30, "host", "S", 5, ["nsenter"]); // an exec session's nsenter
fake(12, "pod", "S", 30, ["sh", "-c", "work"]);
fake(13, "pod", "R", 12, ["yes"]);
fake(14, "pod", "Z", 30, ["defunct"]);
fake(40, "other", "S", 1, ["elsewhere"]);

test("the pod's tree is its pid 1 and descendants", () => {
  expect(processTree(10, proc).sort()).toEqual([10, 11]);
  expect(processTree(30, proc).sort()).toEqual([12, 13, 14, 30]);
});

test("processes of the pod outside its tree are exec sessions, named by pid and command; zombies are not", () => {
  expect(processesOutsideTree(10, proc)).toEqual([
    { pid: 12, command: "sh -c work" },
    { pid: 13, command: "yes" },
  ]);
});
