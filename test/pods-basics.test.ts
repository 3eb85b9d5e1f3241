/**
 * Pods on one test host: namespaces, root, network, logs, exec, stop, rm and
 * the memory limit. Real namespaces: needs root.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRoot, rootTest } from "./_support.ts";
import { testRootfs, TestHost } from "./_pods.ts";

let host: TestHost;
const scratch = mkdtempSync(join(tmpdir(), "autopod-pods-basics-"));

beforeAll(async () => {
  if (isRoot) host = await TestHost.start("b");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

const T = 60_000;

async function exec(name: string, ...cmd: string[]) {
  return host.cli(["exec", name, "--", ...cmd]);
}

describe("a pod", () => {
  rootTest(
    "runs CMD as pid 1, a session leader with only stdin, stdout and stderr open",
    async () => {
      const pod = await host.run("pid1", ["sleep", "1000"]);
      expect(pod.state).toBe("running");
      expect(pod.pid).toBeGreaterThan(1);
      // The host's view of pod pid 1: it is sleep, and it leads its own session.
      const stat = readFileSync(`/proc/${pod.pid}/stat`, "utf8");
      expect(stat).toContain("(sleep)");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      expect(Number(fields[3])).toBe(pod.pid!); // session id (field 6) = its own pid
      // Inside: pid 1 is sleep, with fds 0-2 only; stdin is /dev/null.
      const r = await exec("pid1", "sh", "-c", "cat /proc/1/comm; echo $(ls /proc/1/fd); readlink /proc/1/fd/0; readlink /proc/1/fd/1");
      expect(r.exitCode).toBe(0);
      expect(r.stdout.split("\n")).toEqual(["sleep", "0 1 2", "/dev/null", "/.autopod/pod.log", ""]);
      // Its capabilities are Docker's default set less MKNOD: no SYS_ADMIN, NET_ADMIN or MKNOD.
      const caps = BigInt("0x" + /CapBnd:\s+([0-9a-f]+)/.exec(readFileSync(`/proc/${pod.pid}/status`, "utf8"))![1]);
      for (const dropped of [21n, 12n, 27n, 16n, 17n]) expect((caps >> dropped) & 1n).toBe(0n);
      for (const kept of [0n, 1n, 5n, 10n]) expect((caps >> kept) & 1n).toBe(1n);
    },
    T,
  );

  rootTest(
    "has its hostname: NAME, or --hostname",
    async () => {
      await host.run("named", ["sleep", "1000"]);
      expect((await exec("named", "hostname")).stdout.trim()).toBe("named");
      await host.run("other", ["sleep", "1000"], ["--hostname", "web-1.example"]);
      expect((await exec("other", "hostname")).stdout.trim()).toBe("web-1.example");
      expect((await exec("other", "sh", "-c", "echo $HOSTNAME")).stdout.trim()).toBe("web-1.example");
    },
    T,
  );

  rootTest(
    "cannot see host processes, or host files outside its volumes",
    async () => {
      const marker = join(scratch, "host-only-marker");
      writeFileSync(marker, "secret");
      const vol = join(scratch, "vol");
      Bun.spawnSync(["mkdir", "-p", vol]);
      writeFileSync(join(vol, "shared.txt"), "from the host");
      const ro = join(scratch, "ro");
      Bun.spawnSync(["mkdir", "-p", ro]);
      await host.run("iso", ["sleep", "1000"], ["--volume", `${vol}:/data`, "--volume", `${ro}:/ro:ro`]);

      const ps = await exec("iso", "ps", "-o", "pid,comm");
      const pids = ps.stdout
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => Number(l.trim().split(/\s+/)[0]));
      // Only the pod's own processes: sleep (1) and the ps we ran, with small pids.
      expect(pids).toContain(1);
      expect(Math.max(...pids)).toBeLessThan(100);
      expect(ps.stdout).not.toContain("autopod");

      expect((await exec("iso", "test", "-e", marker)).exitCode).not.toBe(0);
      expect((await exec("iso", "test", "-e", "/work")).exitCode).not.toBe(0);
      expect((await exec("iso", "cat", "/data/shared.txt")).stdout).toBe("from the host");
      expect((await exec("iso", "sh", "-c", "echo from-pod > /data/back.txt")).exitCode).toBe(0);
      expect(readFileSync(join(vol, "back.txt"), "utf8")).toBe("from-pod\n");
      const roWrite = await exec("iso", "sh", "-c", "echo x > /ro/nope");
      expect(roWrite.exitCode).not.toBe(0);
      expect(roWrite.stderr).toMatch(/Read-only/i);
      // The pod's /proc, /dev and /tmp are its own.
      const mounts = (await exec("iso", "cat", "/proc/mounts")).stdout;
      for (const m of [" / overlay ", " /proc proc ", " /dev tmpfs ", " /dev/pts devpts ", " /tmp tmpfs ", " /data ", " /ro "]) expect(mounts).toContain(m);
      const dev = (await exec("iso", "ls", "/dev")).stdout.split("\n").filter(Boolean).sort();
      expect(dev).toEqual(["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
      expect((await exec("iso", "sh", "-c", "head -c 4 /dev/urandom | wc -c")).stdout.trim()).toBe("4");
    },
    T,
  );

  rootTest(
    "writes to a layer of its own: two pods on one base do not see each other's writes",
    async () => {
      const base = testRootfs();
      await host.run("wa", ["sleep", "1000"]);
      await host.run("wb", ["sleep", "1000"]);
      expect((await exec("wa", "sh", "-c", "echo a > /etc/written-by-a && rm /etc/os-release")).exitCode).toBe(0);
      expect((await exec("wb", "test", "-e", "/etc/written-by-a")).exitCode).not.toBe(0);
      expect((await exec("wb", "cat", "/etc/os-release")).exitCode).toBe(0);
      expect((await exec("wa", "cat", "/etc/written-by-a")).stdout).toBe("a\n");
      expect(existsSync(join(base, "etc/written-by-a"))).toBe(false);
      expect(existsSync(join(base, "etc/os-release"))).toBe(true);
    },
    T,
  );

  rootTest(
    "is reachable from the host at its address (busybox httpd)",
    async () => {
      const pod = await host.run("web", ["httpd", "-f", "-p", "80", "-h", "/var/www"], ["--ip", `${host.prefix}.80/24`]);
      expect(pod.address).toBe(`${host.prefix}.80/24`);
      // `run` returns once httpd runs; it may take a moment more to listen.
      let r = { stdout: "", stderr: "", exitCode: -1 };
      for (let i = 0; i < 50 && r.exitCode !== 0; i++) {
        if (i) await Bun.sleep(100);
        r = await host.fetchText(`http://${host.prefix}.80/`);
      }
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("hello from an autopod pod\n");
      // The pod has loopback and a default route via the bridge.
      const routes = (await exec("web", "ip", "route")).stdout;
      expect(routes).toContain(`default via ${host.prefix}.1 dev eth0`);
      expect((await exec("web", "ip", "addr", "show", "lo")).stdout).toContain("127.0.0.1/8");
    },
    T,
  );

  rootTest(
    "gets the next free address when --ip is not given",
    async () => {
      const a = await host.run("addr-a", ["sleep", "1000"]);
      const b = await host.run("addr-b", ["sleep", "1000"]);
      expect(a.address).toMatch(new RegExp(`^${host.prefix.replaceAll(".", "\\.")}\\.\\d+/24$`));
      expect(b.address).not.toBe(a.address);
    },
    T,
  );

  rootTest(
    "has its environment and working directory",
    async () => {
      await host.run(
        "envwd",
        ["sh", "-c", 'echo "$GREETING from $(pwd)"; sleep 1000'],
        ["--env", "GREETING=hi there", "-e", "EMPTY=", "--workdir", "/srv/app"],
      );
      await Bun.sleep(300);
      expect((await host.cli(["logs", "envwd"])).stdout).toBe("hi there from /srv/app\n");
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, for the pod's sh
      expect((await exec("envwd", "sh", "-c", "echo ${EMPTY-unset}:$PATH")).stdout.trim()).toBe(
        ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      );
    },
    T,
  );
});

describe("logs and exec", () => {
  rootTest(
    "logs has the pod's stdout and stderr; -f follows until the pod ends",
    async () => {
      await host.run("chatty", ["sh", "-c", "echo out; echo err >&2; sleep 1; echo later; exit 3"]);
      const f = await host.cli(["logs", "-f", "chatty"], 20_000);
      expect(f.exitCode).toBe(0);
      expect(f.stdout).toBe("out\nerr\nlater\n");
      const p = await host.waitForState("chatty", /^exited/);
      expect(p.state).toBe("exited(3)");
      expect((await host.cli(["logs", "chatty"])).stdout).toBe("out\nerr\nlater\n");
    },
    T,
  );

  rootTest(
    "exec returns output and exit status, in the pod's cgroup",
    async () => {
      await host.run("ex", ["sleep", "1000"]);
      const r = await host.cli(["exec", "ex", "sh", "-c", "echo to-out; echo to-err >&2; exit 7"]);
      expect(r).toEqual({ exitCode: 7, stdout: "to-out\n", stderr: "to-err\n" });
      const cg = await exec("ex", "cat", "/proc/self/cgroup");
      expect(cg.stdout).toMatch(new RegExp(`memory:/autopod/${host.agentKey}/ex`));
      const missing = await exec("ex", "no-such-program");
      expect(missing.exitCode).not.toBe(0);
    },
    T,
  );

  rootTest(
    "exec into a pod that is not running is refused",
    async () => {
      await host.run("done", ["true"]);
      await host.waitForState("done", /^exited/);
      const r = await exec("done", "ls");
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain('Cannot exec in pod "done": it is exited(0)');
    },
    T,
  );
});

describe("stop and rm", () => {
  rootTest(
    "stop sends SIGTERM, then SIGKILL after the grace period",
    async () => {
      await host.run("polite", ["sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]);
      await Bun.sleep(200);
      const t0 = Date.now();
      const a = await host.cli(["stop", "polite", "--timeout", "5"]);
      expect(a.exitCode).toBe(0);
      expect(Date.now() - t0).toBeLessThan(4000);
      expect((await host.pod("polite")).state).toBe("stopped");
      expect((await host.cli(["logs", "polite"])).stdout).toContain("bye");

      // sleep as pid 1 has no SIGTERM handler, so it ignores it: SIGKILL after 1 s.
      await host.run("stubborn", ["sleep", "1000"]);
      const t1 = Date.now();
      const b = await host.cli(["stop", "stubborn", "--timeout", "1"]);
      expect(b.exitCode).toBe(0);
      expect(Date.now() - t1).toBeGreaterThanOrEqual(1000);
      const p = await host.pod("stubborn");
      expect(p.state).toBe("stopped");
      expect(p.pid).toBeNull();
      // Stopping again changes nothing.
      expect((await host.cli(["stop", "stubborn"])).exitCode).toBe(0);
    },
    T,
  );

  rootTest(
    "rm removes namespaces, veth, cgroup, layer and state, never volumes or the base",
    async () => {
      const vol = join(scratch, "keep");
      Bun.spawnSync(["mkdir", "-p", vol]);
      writeFileSync(join(vol, "precious"), "keep me");
      const pod = await host.run("gone", ["sleep", "1000"], ["-v", `${vol}:/keep`]);
      await exec("gone", "sh", "-c", "echo more > /keep/also");
      const netns = `autopod-${host.agentKey}-gone`;
      expect(host.podNetnses()).toContain(netns);
      const layer = join(host.stateDir, "pods", "gone");
      expect(statSync(layer).isDirectory()).toBe(true);
      const vethsBefore = (await host.inNet(["ip", "-o", "link", "show", "master", host.bridge])).stdout.split("\n").filter(Boolean).length;

      const refused = await host.cli(["rm", "gone"]);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toContain('Pod "gone" is running: stop it first, or use --force');
      expect((await host.pod("gone")).state).toBe("running");

      const r = await host.cli(["rm", "--force", "gone"]);
      expect(r.exitCode).toBe(0);
      expect((await host.pods()).map((p) => p.name)).not.toContain("gone");
      expect(host.podNetnses()).not.toContain(netns);
      expect(existsSync(layer)).toBe(false);
      expect(host.podCgroups().some((c) => c.endsWith("/gone"))).toBe(false);
      expect(existsSync(`/proc/${pod.pid}`) && readFileSync(`/proc/${pod.pid}/stat`, "utf8").includes("(sleep)")).toBe(false);
      const vethsAfter = (await host.inNet(["ip", "-o", "link", "show", "master", host.bridge])).stdout.split("\n").filter(Boolean).length;
      expect(vethsAfter).toBe(vethsBefore - 1);
      expect(readFileSync(join(vol, "precious"), "utf8")).toBe("keep me");
      expect(readFileSync(join(vol, "also"), "utf8")).toBe("more\n");
      expect(existsSync(join(testRootfs(), "bin/busybox"))).toBe(true);
      // The name and address are free again.
      await host.run("gone", ["sleep", "1000"], ["--ip", pod.address]);
    },
    T,
  );
});

describe("the memory limit", () => {
  rootTest(
    "kills a pod that exceeds it, and ps says why",
    async () => {
      // busybox sort keeps its whole input in memory: /dev/zero never ends.
      await host.run("hog", ["sort", "/dev/zero"], ["--memory", "32m"]);
      const p = await host.waitForState("hog", /^exited/, 30_000);
      expect(p.state).toBe("exited(137)");
      expect(p.signal).toBe(9);
      expect(p.reason).toBe("OOM-killed: it exceeded its memory limit of 32 MiB");
      const table = (await host.cli(["ps"])).stdout;
      expect(table).toMatch(/hog\s+exited\(137\).*OOM-killed/);
    },
    T,
  );

  rootTest(
    "ps shows memory in use and the limit of a running pod",
    async () => {
      await host.run("small", ["sleep", "1000"], ["--memory", "64m"]);
      const p = await host.pod("small");
      expect(p.memoryLimitBytes).toBe(64 * 2 ** 20);
      expect(p.memoryBytes).toBeGreaterThan(0);
      expect(p.memoryBytes).toBeLessThan(64 * 2 ** 20);
      expect((await host.cli(["ps"])).stdout).toMatch(/small\s+running\s+\d+\s+\S+\s+\d+s\s+[\d.]+ [KM]iB \/ 64 MiB/);
    },
    T,
  );
});
