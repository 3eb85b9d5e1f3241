/** The parser of `ld.so --list-diagnostics` the CPU baseline test relies on, on this host's own glibc. */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { glibcSelection } from "./_glibc.ts";

const LDSO = "/lib64/ld-linux-x86-64.so.2";

async function diagnostics(tunables?: string): Promise<string> {
  const env: Record<string, string> = { PATH: "/usr/bin:/bin" };
  if (tunables !== undefined) env.GLIBC_TUNABLES = tunables;
  const p = Bun.spawn([LDSO, "--list-diagnostics"], { env, stdout: "pipe" });
  const text = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  return text;
}

test("glibcSelection reads the features glibc counts as usable, and sees one the tunable turned off", async () => {
  if (!existsSync(LDSO)) throw new Error(`${LDSO} is missing: this test needs an x86-64 glibc >= 2.33`);
  const cpu = await Bun.file("/proc/cpuinfo").text();
  if (!/^flags\s*:.*\bavx2\b/m.test(cpu)) throw new Error("This CPU has no AVX2: the test turns AVX2 off and needs it on first");
  const plain = glibcSelection(await diagnostics());
  expect(plain.usable.has("AVX2")).toBe(true);
  expect(plain.usable.has("SSE4_2")).toBe(true);
  expect(plain.hwcapsSubdirs).toContain("x86-64-v3");
  expect(plain.tunables).toBe("");
  const masked = glibcSelection(await diagnostics("glibc.cpu.hwcaps=-AVX2"));
  expect(masked.usable.has("AVX2")).toBe(false);
  expect(masked.usable.has("SSE4_2")).toBe(true);
  expect(masked.hwcapsSubdirs).not.toContain("x86-64-v3");
  expect(masked.tunables).toBe("glibc.cpu.hwcaps=-AVX2");
  expect(() => glibcSelection("not it")).toThrow("Not the output of ld.so --list-diagnostics");
});
