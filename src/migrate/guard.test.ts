import { expect, test } from "bun:test";
import { selfArgv } from "../platform/linux/launcher.ts";

/** A guard over a `sleep` standing in for a post-copy copy; the test holds the guard's stdin as the agent would. */
async function guarded() {
  const copy = Bun.spawn(["sleep", "60"]);
  const guard = Bun.spawn([...selfArgv(), "__migration-guard", String(copy.pid), "/run/netns/autopod-guard-test"], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = guard.stdout.getReader();
  const first = await reader.read();
  reader.releaseLock();
  expect(new TextDecoder().decode(first.value).trim()).toBe("armed");
  return { copy, guard };
}

test("the agent gone (end of input) while pages are missing: the guard kills the copy", async () => {
  const { copy, guard } = await guarded();
  await guard.stdin.end();
  expect(await guard.exited).toBe(0);
  expect(await copy.exited).toBe(137);
  expect(copy.signalCode).toBe("SIGKILL");
});

test("released by the agent: the guard leaves the copy running", async () => {
  const { copy, guard } = await guarded();
  guard.stdin.write("pulled\nrelease\n");
  await guard.stdin.end();
  expect(await guard.exited).toBe(0);
  await Bun.sleep(200);
  expect(copy.exitCode).toBeNull();
  copy.kill("SIGKILL");
  await copy.exited;
});

test("a pid that names no process: the guard says so and does not arm", async () => {
  const gone = Bun.spawn(["true"]);
  await gone.exited;
  const guard = Bun.spawn([...selfArgv(), "__migration-guard", String(gone.pid), "/run/netns/x"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  expect(await guard.exited).toBe(1);
  expect((await new Response(guard.stdout).text()).trim()).toBe("gone");
});

test("bad arguments are refused", async () => {
  for (const args of [
    ["1", "/run/netns/x"],
    ["abc", "/run/netns/x"],
    ["123", "relative"],
    ["123", "/run/../etc"],
  ]) {
    const guard = Bun.spawn([...selfArgv(), "__migration-guard", ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    expect(await guard.exited).toBe(2);
  }
});

test("prepared before the copy exists: armed by a later line, then the agent gone while pages are missing kills the copy", async () => {
  const guard = Bun.spawn([...selfArgv(), "__migration-guard", "-"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const copy = Bun.spawn(["sleep", "60"]);
  guard.stdin.write(`pid ${copy.pid} /run/netns/autopod-guard-test\n`);
  await guard.stdin.flush();
  const reader = guard.stdout.getReader();
  expect(new TextDecoder().decode((await reader.read()).value).trim()).toBe("armed");
  reader.releaseLock();
  await guard.stdin.end();
  expect(await guard.exited).toBe(0);
  expect(await copy.exited).toBe(137);
});

test("prepared and released (or left) before it is armed: the guard ends, having guarded nothing", async () => {
  for (const input of ["release\n", ""]) {
    const guard = Bun.spawn([...selfArgv(), "__migration-guard", "-"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    if (input) guard.stdin.write(input);
    await guard.stdin.end();
    expect(await guard.exited).toBe(0);
    expect(await new Response(guard.stdout).text()).toBe("");
  }
});

test("prepared, then a line that is not a pid and an absolute net namespace path: refused", async () => {
  for (const line of ["pid 1 /run/netns/x", "pid abc /run/netns/x", "pid 123 relative", "pid 123 /run/../etc", "kill 123 /run/netns/x"]) {
    const guard = Bun.spawn([...selfArgv(), "__migration-guard", "-"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    guard.stdin.write(`${line}\n`);
    await guard.stdin.end();
    expect(await guard.exited).toBe(2);
  }
});
