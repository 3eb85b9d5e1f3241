import { expect, test } from "bun:test";
import { run, SpawnError, which } from "./exec.ts";

test("run captures output and exit status without a shell", async () => {
  const r = await run(["sh", "-c", 'echo "$0"; echo err >&2; exit 3', "a b;c"]);
  expect(r.stdout).toBe("a b;c\n");
  expect(r.stderr).toBe("err\n");
  expect(r.exitCode).toBe(3);
  expect(r.timedOut).toBe(false);
});

test("run times out", async () => {
  const r = await run(["sleep", "5"], { timeoutMs: 100 });
  expect(r.timedOut).toBe(true);
  expect(r.durationMs).toBeLessThan(2000);
});

test("an aborted signal kills the program at once, and a run asked after it does not start", async () => {
  const ctl = new AbortController();
  const started = performance.now();
  const pending = run(["sleep", "30"], { signal: ctl.signal });
  setTimeout(() => ctl.abort(), 50);
  const r = await pending;
  expect(r.signal).toBe("SIGKILL");
  expect(performance.now() - started).toBeLessThan(5000);
  await expect(run(["true"], { signal: ctl.signal })).rejects.toBeInstanceOf(SpawnError);
});

test("a missing program is a SpawnError", async () => {
  await expect(run(["/nonexistent/prog"])).rejects.toBeInstanceOf(SpawnError);
  expect(which("definitely-not-a-program-xyz")).toBeNull();
  expect(which("sh")).not.toBeNull();
});
