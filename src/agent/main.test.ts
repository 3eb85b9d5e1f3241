import { afterEach, expect, spyOn, test } from "bun:test";
import { areFailpointsEnabled, resetFailpoints } from "../debug/failpoints.ts";
import { runAgent } from "./main.ts";

afterEach(() => resetFailpoints());

function capture(stream: NodeJS.WriteStream): { text: () => string; restore: () => void } {
  let text = "";
  const spy = spyOn(stream, "write").mockImplementation((s: string | Uint8Array) => {
    text += String(s);
    return true;
  });
  return { text: () => text, restore: () => spy.mockRestore() };
}

test("agent --help documents --failpoints as for tests only", async () => {
  const out = capture(process.stdout);
  try {
    expect(await runAgent(["--help"])).toBe(0);
  } finally {
    out.restore();
  }
  expect(out.text()).toContain("--failpoints SPEC  for tests only");
});

test("a bad --failpoints spec is a usage error that names the point, and enables nothing", async () => {
  const err = capture(process.stderr);
  try {
    expect(await runAgent(["--failpoints", "checkpoint.dumpd=kill"])).toBe(2);
  } finally {
    err.restore();
  }
  expect(err.text()).toContain('autopod agent: --failpoints: No failpoint "checkpoint.dumpd": did you mean one of checkpoint.started');
  expect(areFailpointsEnabled()).toBe(false);
});
