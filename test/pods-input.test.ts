/**
 * Bad input to the pod commands: each gets an error that says what was wrong,
 * and nothing changes (no pod, namespace, cgroup, layer or address taken).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { isRoot, rootTest } from "./_support.ts";
import { testRootfs, TestHost } from "./_pods.ts";

let host: TestHost;
beforeAll(async () => {
  if (isRoot) {
    host = await TestHost.start("i");
    await host.run("taken", ["sleep", "1000"], ["--ip", `${host.prefix}.9/24`]);
  }
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

/** Everything a failed command must leave as it was. */
async function snapshot() {
  const pods = await host.pods();
  return {
    pods: pods.map((p) => `${p.name} ${p.state} ${p.address}`).sort(),
    netns: host.podNetnses().sort(),
    cgroups: host.podCgroups().sort(),
    layers: existsSync(join(host.stateDir, "pods")) ? readdirSync(join(host.stateDir, "pods")).sort() : [],
  };
}

async function expectRefused(args: string[], message: string | RegExp, exitCode?: number) {
  const before = await snapshot();
  const r = await host.cli(args);
  expect(r.exitCode).not.toBe(0);
  if (exitCode !== undefined) expect(r.exitCode).toBe(exitCode);
  if (typeof message === "string") expect(r.stderr).toContain(message);
  else expect(r.stderr).toMatch(message);
  expect(await snapshot()).toEqual(before);
}

const T = 30_000;

describe("run refuses, changing nothing,", () => {
  const rootfs = () => testRootfs();

  rootTest(
    "a name that does not match ^[a-z0-9][a-z0-9_.-]{0,62}$",
    async () => {
      for (const bad of ["Web", "-web", ".web", "we/b", "a".repeat(64), "wéb", "a b"]) {
        await expectRefused(["run", bad, "--rootfs", rootfs(), "--", "sleep", "1"], `Invalid pod name "${bad}"`, 2);
      }
      // The longest good name works.
      const longest = "a".repeat(63);
      await host.run(longest, ["sleep", "1000"]);
      expect((await host.cli(["rm", "-f", longest])).exitCode).toBe(0);
    },
    T,
  );

  rootTest(
    "a name already taken",
    async () => {
      await expectRefused(["run", "taken", "--rootfs", rootfs(), "--", "sleep", "1"], 'Pod "taken" already exists');
    },
    T,
  );

  rootTest(
    "an address in use, or outside the subnet",
    async () => {
      const r = rootfs();
      await expectRefused(
        ["run", "x1", "--rootfs", r, "--ip", `${host.prefix}.9/24`, "--", "sleep", "1"],
        `Address "${host.prefix}.9/24" is in use by another pod`,
        2,
      );
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", "10.213.99.9/24", "--", "sleep", "1"], /is outside the pod subnet/, 2);
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", "192.168.1.2/24", "--", "sleep", "1"], /is outside the pod subnet/, 2);
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", `${host.prefix}.1/24`, "--", "sleep", "1"], /is the bridge's address/, 2);
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", `${host.prefix}.255/24`, "--", "sleep", "1"], /broadcast/, 2);
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", `${host.prefix}.9/16`, "--", "sleep", "1"], /must have the pod subnet's prefix \/24/, 2);
      await expectRefused(["run", "x1", "--rootfs", r, "--ip", "10.213.300.1/24", "--", "sleep", "1"], /Invalid address "10.213.300.1\/24"/, 2);
    },
    T,
  );

  rootTest(
    "a root file system that is missing, or lacks CMD",
    async () => {
      await expectRefused(["run", "x2", "--rootfs", "/nonexistent/rootfs", "--", "sleep", "1"], 'Root file system "/nonexistent/rootfs" does not exist', 2);
      await expectRefused(["run", "x2", "--rootfs", join(rootfs(), "etc/passwd"), "--", "sleep", "1"], /is not a directory/, 2);
      await expectRefused(
        ["run", "x2", "--rootfs", rootfs(), "--", "no-such-command"],
        `Command "no-such-command" is not in the root file system "${rootfs()}"`,
        2,
      );
      await expectRefused(["run", "x2", "--rootfs", rootfs(), "--", "/usr/bin/bash"], `Command "/usr/bin/bash" is not in the root file system`, 2);
      // Present but not executable.
      await expectRefused(["run", "x2", "--rootfs", rootfs(), "--", "/etc/passwd"], `Command "/etc/passwd" is not in the root file system`, 2);
    },
    T,
  );

  rootTest(
    "a volume path that does not exist",
    async () => {
      await expectRefused(
        ["run", "x3", "--rootfs", rootfs(), "--volume", "/nonexistent/data:/data", "--", "sleep", "1"],
        'Volume path "/nonexistent/data" does not exist',
        2,
      );
      await expectRefused(
        ["run", "x3", "--rootfs", rootfs(), "--volume", "/tmp", "--", "sleep", "1"],
        'Invalid volume "/tmp": expected HOSTDIR:PODDIR[:ro]',
        2,
      );
      await expectRefused(
        ["run", "x3", "--rootfs", rootfs(), "--volume", "/tmp:/proc/x", "--", "sleep", "1"],
        /Volume mount point "\/proc\/x" is not allowed/,
        2,
      );
    },
    T,
  );

  rootTest(
    "an option without its value",
    async () => {
      for (const opt of ["--rootfs", "--ip", "--hostname", "--volume", "--env", "--memory", "--workdir"]) {
        await expectRefused(["run", "x4", opt], `Option "${opt}" needs a value`, 2);
      }
      await expectRefused(["run", "x4", "--rootfs", rootfs(), "--ip", "--", "sleep", "1"], 'Option "--ip" needs a value', 2);
      await expectRefused(["stop", "taken", "--timeout"], 'Option "--timeout" needs a value', 2);
    },
    T,
  );

  rootTest(
    "other malformed options",
    async () => {
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--memory", "lots", "--", "sleep", "1"], 'Invalid --memory "lots"', 2);
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--memory", "1k", "--", "sleep", "1"], /Memory limit 1 KiB is too small: at least 8 MiB/, 2);
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--env", "NOEQUALS", "--", "sleep", "1"], 'Invalid environment entry "NOEQUALS"', 2);
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--env", "1BAD=x", "--", "sleep", "1"], 'Invalid environment variable name "1BAD"', 2);
      await expectRefused(
        ["run", "x5", "--rootfs", rootfs(), "--workdir", "relative", "--", "sleep", "1"],
        /Working directory "relative" must be an absolute path/,
        2,
      );
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--hostname", "bad host", "--", "sleep", "1"], /Invalid hostname "bad host"/, 2);
      await expectRefused(["run", "x5", "--rootfs", rootfs()], /Missing the command/, 2);
      await expectRefused(["run", "x5", "--", "sleep", "1"], /Missing --rootfs/, 2);
      await expectRefused(["run", "x5", "--rootfs", rootfs(), "--bogus", "--", "sleep", "1"], 'Unknown option "--bogus"', 2);
      await expectRefused(["stop", "taken", "--timeout", "soon"], 'Invalid --timeout "soon"', 2);
    },
    T,
  );
});

describe("commands on an unknown pod", () => {
  for (const args of [
    ["stop", "ghost"],
    ["rm", "ghost"],
    ["logs", "ghost"],
    ["exec", "ghost", "ls"],
  ]) {
    rootTest(
      `${args[0]} says so`,
      async () => {
        await expectRefused(args, 'No pod named "ghost"', 1);
      },
      T,
    );
  }
  rootTest(
    "a bad name is refused as such",
    async () => {
      await expectRefused(["stop", "Ghost!"], 'Invalid pod name "Ghost!"', 2);
    },
    T,
  );
});

describe("no input reaches a shell", () => {
  rootTest(
    "shell syntax in names, commands, env and hostnames is data",
    async () => {
      const canary = `/tmp/autopod-canary-${process.pid}`;
      await expectRefused(["run", `x;touch ${canary}`, "--rootfs", testRootfs(), "--", "sleep", "1"], /Invalid pod name/, 2);
      await host.run("quoted", ["sh", "-c", 'printf "%s|" "$1" "$2"; sleep 1000', "sh", `$(touch ${canary})`, "`id`"], ["--env", `V=$(touch ${canary})`]);
      await Bun.sleep(200);
      expect((await host.cli(["logs", "quoted"])).stdout).toBe(`$(touch ${canary})|\`id\`|`);
      const e = await host.cli(["exec", "quoted", "sh", "-c", 'echo "$V"']);
      expect(e.stdout).toBe(`$(touch ${canary})\n`);
      expect(existsSync(canary)).toBe(false);
    },
    T,
  );
});
