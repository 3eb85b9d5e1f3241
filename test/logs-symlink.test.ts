/**
 * A pod owns its /.autopod/pod.log: one that swaps it (or /.autopod) for a
 * symbolic link to a host file must not make `autopod logs` print that file.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("l");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

rootTest(
  "logs refuses a pod log that is a symlink, or lies under one, and never prints the host file it names",
  async () => {
    const secret = join(host.dir, "host-secret");
    writeFileSync(secret, "HOST SECRET\n");
    const attacks = {
      file: `echo hi; rm /.autopod/pod.log; ln -s ${secret} /.autopod/pod.log; echo linked; sleep 1000`,
      dir: `echo hi; mv /.autopod /x; ln -s ${host.dir} /.autopod; ln -s host-secret /x/host-secret; echo linked; sleep 1000`,
      relative: `echo hi; rm /.autopod/pod.log; ln -s ../../../../../../../../..${secret} /.autopod/pod.log; sleep 1000`,
    };
    for (const [name, script] of Object.entries(attacks)) {
      await host.run(name, ["sh", "-c", script]);
      // Wait until the pod has made its link.
      for (let i = 0; i < 100; i++) {
        const ls = await host.cli(["exec", name, "--", "ls", "-l", "/.autopod/"]);
        if (/->|host-secret/.test(ls.stdout) || (name === "dir" && (await host.cli(["exec", name, "--", "test", "-L", "/.autopod"])).exitCode === 0)) break;
        await Bun.sleep(50);
      }
      for (const args of [
        ["logs", name],
        ["logs", "-f", name],
      ]) {
        const r = await host.cli(args, 10_000);
        expect(r.stdout).not.toContain("HOST SECRET");
        expect(r.exitCode).not.toBe(0);
        expect(r.stderr).toContain("symbolic link");
      }
    }
    // The agent is fine, and a pod that leaves its log alone is still readable.
    await host.run("plain", ["sh", "-c", "echo plain-out; sleep 1000"]);
    await host.waitForLog("plain", /plain-out/);
  },
  120_000,
);
