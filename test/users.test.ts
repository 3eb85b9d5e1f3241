/**
 * Pods whose processes are not root: the way real services run (they start as root and drop to a user of
 * their own). Root on these machines lacks CAP_SYS_RESOURCE, so CRIU cannot read another user's resource
 * limits with prlimit64(): the CRIU autopod builds (scripts/criu-patches/) reads /proc/PID/limits instead.
 * Needs root and that CRIU (scripts/install-criu.sh; AUTOPOD_CRIU points the agents at another build).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCapEff } from "../src/doctor/capabilities.ts";
import { isRoot, rootTest } from "./_support.ts";
import { TestHost, testRootfs } from "./_pods.ts";
import { credsOf, podTree } from "./_users.ts";

const T = 120_000;
let host: TestHost;
let other: TestHost;
const scratch = mkdtempSync(join(tmpdir(), "autopod-users-"));

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("u");
  other = await TestHost.start("v");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
  await other?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** The process of a pod running as `uid` (its real uid), by host pid. */
function processOf(pid: number, uid: number): number {
  const found = podTree(pid).find((p) => credsOf(p).uid.split(" ")[0] === String(uid) && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("sh"));
  if (found === undefined) throw new Error(`No process of uid ${uid} in the pod of pid ${pid}`);
  return found;
}

async function lines(pod: string, file: string, h = host): Promise<number[]> {
  const r = await h.cli(["exec", pod, "--", "cat", file]);
  expect(r.exitCode).toBe(0);
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

function expectContiguous(xs: number[]): void {
  const bad = xs.findIndex((x, i) => x !== i + 1);
  expect(bad === -1 ? "contiguous" : `line ${bad + 1} is ${xs[bad]}`).toBe("contiguous");
}

describe("processes of other users", () => {
  rootTest(
    "a process that dropped to another uid, with limits of its own, is checkpointed and restored with its uid and limits",
    async () => {
      // Root's shell starts a counter as nobody (65534) with a lowered soft and hard RLIMIT_NOFILE.
      const inner = "ulimit -n 300; ulimit -S -n 200; i=0; while :; do i=$((i+1)); echo $i >> /tmp/counter; sleep 0.02; done";
      const pod = await host.run("nobody", ["sh", "-c", `su -s /bin/sh nobody -c '${inner}' & wait`]);
      await Bun.sleep(500);
      const before = processOf(pod.pid!, 65534);
      const limits = readFileSync(`/proc/${before}/limits`, "utf8");
      expect(limits).toMatch(/^Max open files +200 +300 /m);
      const creds = credsOf(before);

      const cp = await host.cli(["checkpoint", "nobody"]);
      // Without the patch: "Can't get rlimit 0: Operation not permitted" (root here lacks CAP_SYS_RESOURCE).
      expect(cp.stderr).not.toContain("Cannot checkpoint");
      expect(cp.exitCode).toBe(0);
      await host.ok(["restore", cp.stdout.trim()]);
      const restored = await host.pod("nobody");
      expect(restored.state).toBe("running");
      await Bun.sleep(400);
      const after = processOf(restored.pid!, 65534);
      expect(credsOf(after)).toEqual(creds);
      expect(readFileSync(`/proc/${after}/limits`, "utf8")).toBe(limits);
      const xs = await lines("nobody", "/tmp/counter");
      expectContiguous(xs);
      expect(xs.length).toBeGreaterThan(30);
    },
    T,
  );
});

describe("a process tree that changes during the dump", () => {
  rootTest(
    "a service starting and reaping short-lived workers as another user checkpoints and restores, three times over",
    async () => {
      // Workers that live a few milliseconds each, started one after another, and a counter that says the service goes on.
      const svc = "i=0; while :; do i=$((i+1)); echo $i >> /tmp/counter; for w in 1 2 3; do (j=0; while [ $j -lt 20 ]; do j=$((j+1)); done) & done; wait; done";
      await host.run("churn", ["sh", "-c", `su -s /bin/sh nobody -c '${svc}'`]);
      await Bun.sleep(500);
      for (let round = 0; round < 3; round++) {
        const id = await host.ok(["checkpoint", "churn"]);
        await host.ok(["restore", id]);
        expect((await host.pod("churn")).state).toBe("running");
        await Bun.sleep(300);
      }
      const xs = await lines("churn", "/tmp/counter");
      expectContiguous(xs);
      expect(xs.length).toBeGreaterThan(20);
      await host.ok(["rm", "--force", "churn"]);
    },
    T,
  );
});

describe("run --user", () => {
  rootTest(
    "runs CMD as UID:GID with the groups of the pod's /etc/group and no capabilities; refuses a user that is not UID[:GID]",
    async () => {
      // The pod's own /etc/group (a volume over the base's) lists nobody in two more groups.
      const group = join(scratch, "group");
      writeFileSync(group, "root:x:0:\ntty:x:5:nobody\nnogroup:x:65534:\nextra:x:4242:root,nobody\n");
      const pod = await host.run("as-nobody", ["sh", "-c", "echo home=$HOME; id; exec sleep 1000"], ["--user", "65534", "-v", `${group}:/etc/group:ro`]);
      expect(credsOf(pod.pid!)).toEqual({ uid: "65534 65534 65534 65534", gid: "65534 65534 65534 65534", groups: "5 4242 65534" });
      expect(readFileSync(`/proc/${pod.pid}/status`, "utf8")).toMatch(/^CapEff:\s*0+$/m);
      expect(await host.waitForLog("as-nobody", /home=\S+/)).toBe("home=/nonexistent");
      // CRIU gives it back the same credentials and groups.
      await host.ok(["restore", await host.ok(["checkpoint", "as-nobody", "--exclude-volume", "/etc/group"])]);
      expect(credsOf((await host.pod("as-nobody")).pid!)).toEqual({ uid: "65534 65534 65534 65534", gid: "65534 65534 65534 65534", groups: "5 4242 65534" });

      const withGid = await host.run("as-33", ["sleep", "1000"], ["--user", "33:44"]);
      expect(credsOf(withGid.pid!)).toEqual({ uid: "33 33 33 33", gid: "44 44 44 44", groups: "44" });

      for (const bad of ["www-data", "33:", "-1", "4294967295", "1:2:3"]) {
        const r = await host.cli(["run", "bad", "--rootfs", testRootfs(), `--user=${bad}`, "--", "true"]);
        expect(r.exitCode).not.toBe(0);
        expect(r.stderr).toContain(`Invalid --user "${bad}": expected UID[:GID]`);
      }
      await host.ok(["rm", "--force", "as-nobody", "as-33"]);
    },
    T,
  );

  rootTest(
    "a service that dropped to its own user: its credentials, groups and files in the writable layer and a volume survive a checkpoint and a restore on another host",
    async () => {
      const vol = join(scratch, "vol");
      mkdirSync(vol);
      Bun.spawnSync(["chown", "33:33", vol]);
      // The base has no www-data: the pod adds it (and a group listing it) in its writable layer, as a package would.
      const ACCOUNTS =
        "echo www-data:x:33:33:www-data:/var/www:/bin/sh >> /etc/passwd && echo www-data:x:33: >> /etc/group && echo adm:x:4:www-data >> /etc/group";
      // As root: a directory of the service's user in the writable layer, then the service, as www-data.
      const svc = "i=0; while :; do i=$((i+1)); echo $i >> /srv/www/counter; echo $i >> /vol/counter; sleep 0.02; done";
      const pod = await host.run(
        "svc",
        ["sh", "-c", `${ACCOUNTS} && mkdir -p /srv/www && chown 33:33 /srv/www && chmod 0750 /srv/www && exec su -s /bin/sh www-data -c '${svc}'`],
        ["-v", `${vol}:/vol`],
      );
      await Bun.sleep(600);
      expect(credsOf(pod.pid!)).toEqual({ uid: "33 33 33 33", gid: "33 33 33 33", groups: "4 33" });
      const file = join(scratch, "svc.img");
      const id = (await host.ok(["checkpoint", "svc", "--export", file])).split("\n")[0]!;
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      await other.ok(["restore", "--import", file, "--trust", "--name", "svc", "--ip", `${other.prefix}.9/24`]);
      await Bun.sleep(400);
      const moved = await other.pod("svc");
      expect(moved.state).toBe("running");
      expect(credsOf(moved.pid!)).toEqual({ uid: "33 33 33 33", gid: "33 33 33 33", groups: "4 33" });
      const ls = await other.cli(["exec", "svc", "--", "ls", "-ln", "/srv/www/counter", "-d", "/srv/www"]);
      expect(ls.stdout).toMatch(/^drwxr-x--- +\d+ 33 +33 .* \/srv\/www$/m);
      expect(ls.stdout).toMatch(/^-rw-r--r-- +\d+ 33 +33 .* \/srv\/www\/counter$/m);
      expectContiguous(await lines("svc", "/srv/www/counter", other));
      expectContiguous(readFileSync(join(vol, "counter"), "utf8").split("\n").filter(Boolean).map(Number));
      expect(statSync(join(vol, "counter")).uid).toBe(33);
      await other.ok(["rm", "--force", "svc"]);
      await host.cli(["rm", "--force", "svc"]);
    },
    T,
  );
});

describe("doctor", () => {
  rootTest(
    "says whether CAP_SYS_RESOURCE is missing, and whether the CRIU it finds works around it",
    async () => {
      const lacks = (parseCapEff(readFileSync("/proc/self/status", "utf8"))! & (1n << 24n)) === 0n;
      const r = await host.cli(["doctor", "--json"]);
      const report = JSON.parse(r.stdout) as { checks: Array<{ id: string; status: string; detail: string }> };
      const cap = report.checks.find((c) => c.id === "cap_sys_resource");
      const patches = report.checks.find((c) => c.id === "criu_patches")!;
      const isPatched = patches.status === "ok";
      if (!lacks) {
        expect(cap).toBeUndefined();
        return;
      }
      expect(cap).toBeDefined();
      expect(cap!.detail).toContain("Can't get rlimit 0");
      expect(cap!.status).toBe(isPatched ? "warn" : "fail");
      expect(cap!.detail).toContain(isPatched ? "works around the dump" : "lacks autopod's CRIU patches");
    },
    T,
  );
});
