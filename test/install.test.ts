import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, DIST, REPO, autopod, rootTest } from "./_support.ts";

const work = mkdtempSync(join(tmpdir(), "autopod-install-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`bun build.ts\` first (scripts/test.sh does)`);
});

async function sh(argv: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn(argv, { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } as Record<string, string> });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, exitCode };
}

describe("the binary", () => {
  test("runs from an empty environment in another directory", async () => {
    const r = Bun.spawnSync(["env", "-i", DIST, "version", "--json"], { cwd: work });
    expect(r.exitCode).toBe(0);
    const info = JSON.parse(r.stdout.toString());
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.commit).not.toBe("dev");
    expect(info.bun).toBe(Bun.version);
    const v = Bun.spawnSync(["env", "-i", DIST, "--version"], { cwd: work });
    expect(v.stdout.toString()).toContain(`commit ${info.commit}`);
  });

  test("every command has --help", async () => {
    const top = await autopod(["--help"]);
    expect(top.exitCode).toBe(0);
    const commands = top.stdout
      .split("Commands:\n")[1]!
      .split("\n\n")[0]!
      .split("\n")
      .map((l) => l.trim().split(/\s{2,}/)[0]!);
    expect(commands).toContain("doctor");
    for (const c of commands) {
      const r = await autopod([...c.split(" "), "--help"]);
      expect({ c, exit: r.exitCode }).toEqual({ c, exit: 0 });
      expect(r.stdout).toContain("Usage: autopod");
    }
  });

  test("bad input is a usage error that names it", async () => {
    const r = await autopod(["frobnicate"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    const o = await autopod(["config", "show", "--config"]);
    expect(o.exitCode).toBe(2);
    expect(o.stderr).toContain('Option "--config" needs a value');
  });

  test("config show reports file, environment and flags, and names a bad key", async () => {
    const cfg = join(work, "c.toml");
    writeFileSync(cfg, '[network]\nbridge = "br-file"\n');
    const r = await autopod(["config", "show", "--json", "--config", cfg, "--state", "/srv/x"], { env: { AUTOPOD_NETWORK_SUBNET: "10.213.9.0/24" } });
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.config.network.bridge).toBe("br-file");
    expect(j.config.network.subnet).toBe("10.213.9.0/24");
    expect(j.config.state_dir).toBe("/srv/x");
    const bad = await autopod(["config", "show", "--config", cfg], { env: { AUTOPOD_NETWORK_SUBNET: "nope" } });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain('network.subnet = "nope" (from AUTOPOD_NETWORK_SUBNET): expected an IPv4 subnet');
  });

  test("config show has the tuning keys, set by their AUTOPOD_<SECTION>_<KEY> names or their older ones", async () => {
    const cfg = join(work, "t.toml");
    writeFileSync(cfg, "");
    const env = { AUTOPOD_PAGE_TAIL: "0", AUTOPOD_STORE_HASH_THREADS: "2" };
    const j = JSON.parse((await autopod(["config", "show", "--json", "--config", cfg], { env })).stdout);
    expect(j.config.store).toEqual({ hash_threads: 2, native_hash: true });
    expect(j.config.checkpoint).toEqual({ page_tail: false });
    expect(j.env_vars).toEqual({ "store.hash_threads": "AUTOPOD_STORE_HASH_THREADS", "checkpoint.page_tail": "AUTOPOD_PAGE_TAIL" });
    const text = (await autopod(["config", "show", "--config", cfg], { env })).stdout;
    expect(text).toContain("checkpoint.page_tail = false  # from AUTOPOD_PAGE_TAIL");
    expect(text).toContain("store.hash_threads = 2  # from AUTOPOD_STORE_HASH_THREADS");
    expect(text).toContain("store.native_hash = true\n");
  });
});

describe("autopod criu install", () => {
  rootTest(
    "unpacks the CRIU the binary carries; it runs from there with only glibc from the host, and passes criu check",
    async () => {
      const prefix = join(work, "criu");
      const r = await autopod(["criu", "install", "--prefix", prefix, "--json"]);
      expect(r.exitCode).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j).toMatchObject({ path: join(prefix, "current/bin/criu"), criuVersion: "4.2.1", changed: true });
      expect(j.gitId).toMatch(/^autopod-[0-9a-f]{12}$/);
      expect(j.packedBytes).toBeLessThan(j.unpackedBytes);
      // Every library but glibc's comes from the bundle.
      const ldd = await sh(["ldd", j.path]);
      const glibc = new Set([
        "linux-vdso.so.1",
        "libc.so.6",
        "ld-linux-x86-64.so.2",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
      ]);
      const outside = ldd.stdout
        .split("\n")
        .map((l) => /^\s*(\S+) => (\S+)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null && !glibc.has(m[1]!) && !m[2]!.startsWith(`${j.dir}/`) && !m[2]!.startsWith(`${prefix}/current/`));
      expect(outside.map((m) => `${m[1]} => ${m[2]}`)).toEqual([]);
      const check = await sh(["env", "-i", j.path, "check"]);
      expect(check.stdout + check.stderr).toContain("Looks good.");
      const again = await autopod(["criu", "install", "--prefix", prefix]);
      expect(again.stdout.trim()).toBe(`already installed: CRIU 4.2.1 (${j.gitId}) at ${j.path}`);
      const rel = await autopod(["criu", "install", "--prefix", "relative"]);
      expect(rel.exitCode).toBe(2);
      expect(rel.stderr).toContain('--prefix must be an absolute path (got "relative")');
    },
    60_000,
  );
});

describe("install.sh", () => {
  rootTest(
    "installs from a file under a prefix, upgrades cleanly, uninstalls and purges",
    async () => {
      const prefix = join(work, "root");
      const first = await sh(["sh", "install.sh", "--from-file", DIST, "--prefix", prefix]);
      expect(first.exitCode).toBe(0);
      const bin = join(prefix, "usr/local/bin/autopod");
      const conf = join(prefix, "etc/autopod/autopod.toml");
      expect(statSync(bin).mode & 0o777).toBe(0o755);
      expect(readFileSync(conf, "utf8")).toContain(`state_dir = "${prefix}/var/lib/autopod"`);
      expect(existsSync(join(prefix, "var/lib/autopod"))).toBe(true);
      expect(existsSync(join(prefix, "usr/local/share/autopod/install-criu.sh"))).toBe(true);
      expect(first.stdout + first.stderr).toContain("criu check");

      // A second run is an upgrade: a new inode (write then rename), config and state untouched.
      writeFileSync(conf, readFileSync(conf, "utf8") + "# edited by the operator\n");
      writeFileSync(join(prefix, "var/lib/autopod/keep"), "state");
      const inode = statSync(bin).ino;
      const second = await sh(["sh", "install.sh", "--from-file", DIST, "--prefix", prefix, "--skip-criu"]);
      expect(second.exitCode).toBe(0);
      expect(second.stderr).toContain("upgraded");
      expect(second.stderr).toContain("kept existing");
      expect(statSync(bin).ino).not.toBe(inode);
      expect(readFileSync(conf, "utf8")).toContain("# edited by the operator");
      expect(readFileSync(join(prefix, "var/lib/autopod/keep"), "utf8")).toBe("state");

      const un = await sh(["sh", "install.sh", "--uninstall", "--prefix", prefix]);
      expect(un.exitCode).toBe(0);
      expect(existsSync(bin)).toBe(false);
      expect(existsSync(join(prefix, "var/lib/autopod/keep"))).toBe(true);
      const purge = await sh(["sh", "install.sh", "--purge", "--prefix", prefix]);
      expect(purge.exitCode).toBe(0);
      expect(existsSync(join(prefix, "var/lib/autopod"))).toBe(false);
      expect(existsSync(conf)).toBe(false);
    },
    120_000,
  );

  rootTest(
    "downloads from a real HTTP server in a test network namespace, and refuses a mismatch, a truncated download and a missing checksum",
    async () => {
      const bytes = new Uint8Array(await Bun.file(DIST).arrayBuffer());
      const good = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
      const netns = `aptest-url${process.pid % 10000}`;
      await sh(["ip", "netns", "del", netns]);
      expect((await sh(["ip", "netns", "add", netns])).exitCode).toBe(0);
      const inNs = (argv: string[]) => sh(["nsenter", `--net=/run/netns/${netns}`, "--", ...argv]);
      await inNs(["ip", "link", "set", "lo", "up"]);
      expect((await inNs(["ip", "addr", "add", "10.213.251.1/32", "dev", "lo"])).exitCode).toBe(0);
      // The server: plain HTTP/1.1 over a TCP socket in the namespace, so a response can promise more than it sends.
      const serverJs = join(work, "server.ts");
      writeFileSync(
        serverJs,
        `
const bytes = new Uint8Array(await Bun.file(${JSON.stringify(DIST)}).arrayBuffer());
const good = ${JSON.stringify(good)};
const routes = {
  "/ok/autopod": { body: bytes },
  "/ok/autopod.sha256": { body: good + "  autopod\\n" },
  "/bad/autopod": { body: bytes },
  "/bad/autopod.sha256": { body: "0".repeat(64) + "  autopod\\n" },
  "/cut/autopod": { body: bytes.subarray(0, bytes.length >> 1), length: bytes.length },
  "/cut/autopod.sha256": { body: good + "  autopod\\n" },
  "/nosum/autopod": { body: bytes },
};
Bun.listen({
  hostname: "10.213.251.1",
  port: 8080,
  socket: {
    data(sock, data) {
      const path = /^GET (\\S+) /.exec(new TextDecoder().decode(data))?.[1] ?? "";
      const r = routes[path];
      const body = r === undefined ? new TextEncoder().encode("not found") : typeof r.body === "string" ? new TextEncoder().encode(r.body) : r.body;
      const head = (r === undefined ? "HTTP/1.1 404 Not Found" : "HTTP/1.1 200 OK") + "\\r\\nContent-Length: " + (r?.length ?? body.length) + "\\r\\nConnection: close\\r\\n\\r\\n";
      sock.write(new TextEncoder().encode(head));
      let off = 0;
      const more = () => { while (off < body.length) { const n = sock.write(body.subarray(off)); if (n <= 0) return; off += n; } sock.end(); };
      sock.data = more;
      more();
    },
    drain(sock) { sock.data?.(); },
  },
});
console.log("listening");
`,
      );
      const server = Bun.spawn(["nsenter", `--net=/run/netns/${netns}`, "--", BUN, serverJs], { stdout: "pipe", stderr: "inherit" });
      try {
        const reader = server.stdout.getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toContain("listening");
        const prefix = join(work, "url");
        const bin = join(prefix, "usr/local/bin/autopod");
        const install = (path: string) =>
          inNs(["sh", join(REPO, "install.sh"), "--from-url", `http://10.213.251.1:8080${path}`, "--prefix", prefix, "--skip-criu"]);
        const ok = await install("/ok/autopod");
        expect(ok.exitCode).toBe(0);
        expect(ok.stderr).toContain(`checksum verified (${good})`);
        expect(new Bun.CryptoHasher("sha256").update(await Bun.file(bin).arrayBuffer()).digest("hex")).toBe(good);
        const before = statSync(bin).ino;
        const leftovers = () => readdirSync(join(prefix, "usr/local/bin")).filter((n) => n !== "autopod");

        const bad = await install("/bad/autopod");
        expect(bad.exitCode).not.toBe(0);
        expect(bad.stderr).toContain(`checksum mismatch for http://10.213.251.1:8080/bad/autopod: expected ${"0".repeat(64)}, got ${good}`);

        const cut = await install("/cut/autopod");
        expect(cut.exitCode).not.toBe(0);
        expect(cut.stderr).toContain("cannot download http://10.213.251.1:8080/cut/autopod");

        const nosum = await install("/nosum/autopod");
        expect(nosum.exitCode).not.toBe(0);
        expect(nosum.stderr).toContain("cannot download http://10.213.251.1:8080/nosum/autopod.sha256 (refusing an unverified binary)");

        const missing = await install("/nothing/autopod");
        expect(missing.exitCode).not.toBe(0);
        expect(missing.stderr).toContain("cannot download http://10.213.251.1:8080/nothing/autopod");

        // None of them touched the installed binary or left a temporary file.
        expect(statSync(bin).ino).toBe(before);
        expect(leftovers()).toEqual([]);
      } finally {
        server.kill("SIGKILL");
        await server.exited;
        await sh(["ip", "netns", "del", netns]);
      }
    },
    120_000,
  );

  rootTest(
    "the systemd unit it writes passes systemd-analyze verify",
    async () => {
      const prefix = join(work, "unit");
      expect((await sh(["sh", "install.sh", "--from-file", DIST, "--prefix", prefix, "--skip-criu"])).exitCode).toBe(0);
      const unit = await sh(["sh", "install.sh", "--print-unit", "--prefix", prefix]);
      expect(unit.exitCode).toBe(0);
      expect(unit.stdout).toContain(`ExecStart=${prefix}/usr/local/bin/autopod agent --config ${prefix}/etc/autopod/autopod.toml`);
      const file = join(work, "autopod.service");
      writeFileSync(file, unit.stdout);
      const verify = await sh(["systemd-analyze", "verify", file]);
      expect({ exit: verify.exitCode, said: verify.stderr.split("\n").filter((l) => l.includes("autopod.service")) }).toEqual({ exit: 0, said: [] });
      // The check can fail: the same unit naming a binary that is not there does not pass.
      writeFileSync(file, unit.stdout.replaceAll(`${prefix}/usr/local/bin/autopod`, `${prefix}/nowhere/autopod`));
      expect((await sh(["systemd-analyze", "verify", file])).exitCode).not.toBe(0);
    },
    60_000,
  );

  test("piped into sh with no source, it says what to pass", async () => {
    const p = Bun.spawn(["sh", "-s", "--", "--prefix", join(work, "pipe")], {
      stdin: Bun.file(join(REPO, "install.sh")),
      stdout: "pipe",
      stderr: "pipe",
      cwd: work,
    });
    const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(code).not.toBe(0);
    expect(stderr).toContain("pass --from-url URL or --from-file PATH");
  });
});

describe("doctor", () => {
  rootTest(
    "gives a result for every check",
    async () => {
      const r = await autopod(["doctor", "--json"]);
      const report = JSON.parse(r.stdout);
      const ids = report.checks.map((c: { id: string }) => c.id);
      for (const id of [
        "kernel",
        "privileges",
        "namespaces",
        "criu",
        "criu_check",
        "mem_dirty_track",
        "nftables",
        "iproute2",
        "util-linux",
        "cgroup_memory",
        "free_space",
        "page_hashing",
        "systemd",
      ]) {
        expect(ids).toContain(id);
      }
      for (const c of report.checks) expect(["ok", "warn", "fail"]).toContain(c.status);
      expect(r.exitCode).toBe(report.ok ? 0 : 1);
      // The built binary carries the native hashing and, on a CPU with AVX-512 or the SHA extensions, uses it
      // (from a memfd); on one without, it says so (the library is there: it is not "not built in" nor "cannot load").
      const hashing = report.checks.find((c: { id: string }) => c.id === "page_hashing");
      const cpu = readFileSync("/proc/cpuinfo", "utf8");
      const hasAvx512 = /\bavx512f\b/.test(cpu) && /\bavx512bw\b/.test(cpu);
      const hasShaNi = /\bsha_ni\b/.test(cpu) && /\bssse3\b/.test(cpu) && /\bsse4_1\b/.test(cpu);
      expect(hashing.detail).toBe(
        hasAvx512
          ? "SHA-256 of 16 pages at a time with AVX-512"
          : hasShaNi
            ? "SHA-256 of 4 pages at a time with the SHA extensions"
            : "SHA-256 one page at a time (this CPU has neither AVX-512 nor the SHA extensions)",
      );
    },
    60_000,
  );

  rootTest(
    "says Debian's CRIU 3.17 is too old for this kernel and names the fix",
    async () => {
      // The real bookworm package, unpacked (not installed) so the host's CRIU stays as it is.
      const dir = join(work, "criu-deb");
      let dl = await sh(["sh", "-c", `mkdir -p "$0" && cd "$0" && apt-get download criu`, dir]);
      if (dl.exitCode !== 0) {
        await sh(["apt-get", "update"]);
        dl = await sh(["sh", "-c", `mkdir -p "$0" && cd "$0" && apt-get download criu`, dir]);
      }
      expect(dl.exitCode).toBe(0);
      const deb = new Bun.Glob("criu_*.deb").scanSync(dir).next().value as string;
      expect((await sh(["dpkg-deb", "-x", join(dir, deb), join(dir, "x")])).exitCode).toBe(0);
      const criu = join(dir, "x/usr/sbin/criu");
      const r = await autopod(["doctor", "--json"], { env: { AUTOPOD_CRIU: criu } });
      expect(r.exitCode).toBe(1);
      const check = JSON.parse(r.stdout).checks.find((c: { id: string }) => c.id === "criu");
      expect(check.status).toBe("fail");
      expect(check.detail).toMatch(/version 3\.17\.\d+ is too old for this kernel: Linux \S+ needs CRIU >= 4\.2/);
      // The binary carries CRIU: the fix installs that one (no compiler, no network), and the configured path must go.
      expect(check.fix).toBe(
        "install CRIU >= 4.2: autopod criu install (puts the CRIU this binary carries under /usr/local/lib/autopod/criu), and unset criu in the configuration (it names this one)",
      );
      const human = await autopod(["doctor"], { env: { AUTOPOD_CRIU: criu } });
      expect(human.stdout).toContain("too old for this kernel");
      expect(human.stdout).toContain("fix: install CRIU >= 4.2");
    },
    180_000,
  );
});
