/** The pod commands' help and what they say when no agent answers. No root needed. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { autopod } from "./_support.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-pods-cli-"));
const emptyConfig = join(dir, "autopod.toml");
writeFileSync(emptyConfig, "");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("--help", () => {
  for (const cmd of ["run", "ps", "logs", "exec", "stop", "rm", "agent"]) {
    test(`autopod ${cmd} --help`, async () => {
      const r = await autopod([cmd, "--help"]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toStartWith(`Usage: autopod ${cmd}`);
      expect(r.stdout).toContain("--socket");
      expect(r.stdout).toContain("--state");
      expect(r.stdout).toContain("--config");
    });
  }
  test("run --help names every option", async () => {
    const r = await autopod(["run", "--help"]);
    for (const o of ["--rootfs DIR", "--ip ADDR/PREFIX", "--hostname H", "--volume HOSTDIR:PODDIR[:ro]", "--env KEY=VALUE", "--memory SIZE", "--workdir DIR"])
      expect(r.stdout).toContain(o);
  });
  test("the top-level help lists the pod commands", async () => {
    const r = await autopod(["--help"]);
    for (const c of ["agent", "run", "ps", "logs", "exec", "stop", "rm"]) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\s`, "m"));
  });
});

describe("no agent", () => {
  for (const args of [["ps"], ["run", "web", "--rootfs", "/", "--", "sh"], ["logs", "web"], ["exec", "web", "ls"], ["stop", "web"], ["rm", "web"]]) {
    test(`${args[0]} says where it looked and how to start one`, async () => {
      const socket = `/tmp/autopod-no-agent-${process.pid}.sock`;
      const r = await autopod(args, { env: { AUTOPOD_SOCKET: socket, AUTOPOD_CONFIG: emptyConfig } });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`No autopod agent answers at "${socket}" (no such socket)`);
      expect(r.stderr).toContain(`autopod agent --socket ${socket}`);
    });
  }
  test("--socket overrides the environment", async () => {
    const r = await autopod(["ps", "--socket", "/tmp/autopod-elsewhere.sock"], { env: { AUTOPOD_SOCKET: "/tmp/x.sock", AUTOPOD_CONFIG: emptyConfig } });
    expect(r.stderr).toContain('"/tmp/autopod-elsewhere.sock"');
  });
});
