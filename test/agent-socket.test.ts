/**
 * `agent --socket PATH` takes over only a stale socket: any other file at PATH
 * (a mistyped path, a symlink) is refused and left as it was.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("s");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

rootTest(
  "an agent refuses a --socket path that is a regular file or a symlink, and deletes neither",
  async () => {
    await host.killAgent("SIGTERM");
    writeFileSync(host.socket, "precious\n");
    await expect(host.startAgent()).rejects.toThrow(`Cannot listen on "${host.socket}": it exists and is not a socket`);
    expect(readFileSync(host.socket, "utf8")).toBe("precious\n");

    const victim = join(host.dir, "victim");
    writeFileSync(victim, "also precious\n");
    rmSync(host.socket);
    symlinkSync(victim, host.socket);
    await expect(host.startAgent()).rejects.toThrow("it exists and is not a socket");
    expect(readlinkSync(host.socket)).toBe(victim);
    expect(readFileSync(victim, "utf8")).toBe("also precious\n");

    // A stale socket (the agent was killed) is still taken over.
    rmSync(host.socket);
    await host.startAgent();
    await host.killAgent("SIGKILL");
    await host.startAgent();
    expect((await host.cli(["ps"])).exitCode).toBe(0);
  },
  60_000,
);
