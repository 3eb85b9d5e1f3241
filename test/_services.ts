/**
 * Real services in pods, for test/services.test.ts and bench/services.ts: a pod root built from
 * Debian's packages (scripts/make-services-rootfs.sh), nginx, MariaDB and Redis configured to run there,
 * and clients that work against them through a checkpoint and restore.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, REPO } from "./_support.ts";
import type { TestHost } from "./_pods.ts";

/** The services root (debootstrap minbase, nginx-light, mariadb-server, redis-server), built when missing (about 5 minutes). */
export function servicesRootfs(): string {
  const dir = process.env.AUTOPOD_TEST_SERVICES_ROOTFS ?? join(REPO, ".cache/services-rootfs");
  if (!existsSync(join(dir, ".autopod-services"))) {
    const r = Bun.spawnSync(["bash", join(REPO, "scripts/make-services-rootfs.sh"), dir], { stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error(`scripts/make-services-rootfs.sh ${dir} failed`);
  }
  return dir;
}

/** nginx as Debian runs it: a master as root, workers as www-data; long keep-alive so clients keep their connections. */
export const NGINX_CONF = `user www-data;
worker_processes 2;
daemon off;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 512; }
http {
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  server {
    listen 80;
    root /srv/www;
  }
}
`;

/** A directory with nginx.conf and the site (/srv/www/file.txt, 16 KiB), to bind at /etc/nginx-pod. */
export function nginxFiles(dir: string): { conf: string; site: string } {
  const conf = join(dir, "nginx-conf");
  const site = join(dir, "nginx-site");
  mkdirSync(conf, { recursive: true });
  mkdirSync(site, { recursive: true });
  writeFileSync(join(conf, "nginx.conf"), NGINX_CONF);
  writeFileSync(join(site, "file.txt"), "0123456789abcdef".repeat(1024));
  return { conf, site };
}

/** Start nginx in a pod and wait until it answers. */
export async function startNginx(host: TestHost, name: string, rootfs: string, files: { conf: string; site: string }): Promise<string> {
  const r = await host.cli([
    "run",
    name,
    "--rootfs",
    rootfs,
    "-v",
    `${files.conf}:/etc/nginx-pod:ro`,
    "-v",
    `${files.site}:/srv/www:ro`,
    "--",
    "/usr/sbin/nginx",
    "-c",
    "/etc/nginx-pod/nginx.conf",
  ]);
  if (r.exitCode !== 0) throw new Error(`autopod run ${name} failed: ${r.stderr}`);
  const ip = (await host.pod(name)).address.split("/")[0]!;
  await waitFor(async () => (await host.fetchText(`http://${ip}/file.txt`)).stdout.length === 16384, `nginx in pod "${name}" never answered`);
  return ip;
}

/**
 * MariaDB as Debian installs it (runs as mysql, data in /var/lib/mysql of the pod's writable layer), listening
 * on the pod's address, with a user the test client logs in as. `nativeAio` false sets innodb_use_native_aio = 0,
 * which keeps InnoDB off io_uring (which CRIU cannot dump).
 */
export async function startMariadb(host: TestHost, name: string, rootfs: string, opts: { nativeAio: boolean }): Promise<string> {
  const args = [
    "/usr/sbin/mariadbd",
    "--user=mysql",
    "--bind-address=0.0.0.0",
    "--skip-name-resolve",
    "--socket=/run/mysqld/mysqld.sock",
    "--log-error=/var/log/mysql/error.log",
    `--innodb-use-native-aio=${opts.nativeAio ? 1 : 0}`,
  ];
  // mariadbd needs /run/mysqld for its socket; Debian's init script makes it.
  const cmd = `mkdir -p /run/mysqld /var/log/mysql && chown mysql:mysql /run/mysqld /var/log/mysql && exec ${args.join(" ")}`;
  const r = await host.cli(["run", name, "--rootfs", rootfs, "--", "/bin/sh", "-c", cmd]);
  if (r.exitCode !== 0) throw new Error(`autopod run ${name} failed: ${r.stderr}`);
  await waitFor(async () => (await sql(host, name, "SELECT 1")).exitCode === 0, `MariaDB in pod "${name}" never answered`, 60_000);
  const setup = await sql(
    host,
    name,
    "CREATE DATABASE IF NOT EXISTS t; CREATE TABLE IF NOT EXISTS t.acked (id INT PRIMARY KEY) ENGINE=InnoDB; CREATE USER IF NOT EXISTS 'client'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON t.* TO 'client'@'%'",
  );
  if (setup.exitCode !== 0) throw new Error(`Setting up MariaDB in pod "${name}" failed: ${setup.stderr}`);
  return (await host.pod(name)).address.split("/")[0]!;
}

/** Run SQL in the pod as root over its unix socket; the output is tab-separated rows. */
export function sql(host: TestHost, pod: string, statement: string): ReturnType<TestHost["cli"]> {
  return host.cli(["exec", pod, "--", "/usr/bin/mariadb", "--socket=/run/mysqld/mysqld.sock", "-N", "-B", "-e", statement]);
}

/**
 * A client pod: one MariaDB session (the mariadb client) that inserts 1, 2, 3, ... each in a transaction of its own,
 * and after each COMMIT prints "ack N SECONDS" (the server's clock), which /ack.log in the pod collects.
 */
export async function startSqlClient(host: TestHost, name: string, rootfs: string, serverIp: string): Promise<void> {
  const loop = `i=0; while :; do i=$((i+1)); echo "BEGIN; INSERT INTO t.acked VALUES ($i); COMMIT; SELECT 'ack', $i, UNIX_TIMESTAMP(NOW(6));"; sleep 0.01; done`;
  const client = `/usr/bin/mariadb -h ${serverIp} -u client -ppw -N -B -n --connect-timeout=10`;
  const r = await host.cli(["run", name, "--rootfs", rootfs, "--", "/bin/sh", "-c", `(${loop}) | ${client} > /ack.log 2> /client.err`]);
  if (r.exitCode !== 0) throw new Error(`autopod run ${name} failed: ${r.stderr}`);
}

/** The commits a client pod has seen acknowledged, in order, with the server's time of each. */
export async function acks(host: TestHost, client: string): Promise<Array<{ id: number; at: number }>> {
  const r = await host.cli(["exec", client, "--", "cat", "/ack.log"]);
  if (r.exitCode !== 0) throw new Error(`Reading the acks of "${client}" failed: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .map((l) => l.split("\t"))
    .filter((f) => f[0] === "ack" && f.length === 3)
    .map((f) => ({ id: Number(f[1]), at: Number(f[2]) }));
}

/** The longest time between two consecutive acknowledgements, in ms. */
export function longestGapMs(xs: Array<{ at: number }>): number {
  let gap = 0;
  for (let i = 1; i < xs.length; i++) gap = Math.max(gap, (xs[i]!.at - xs[i - 1]!.at) * 1000);
  return Math.round(gap);
}

/**
 * Debian's redis-server as Debian runs it: as its own user (redis), data in /var/lib/redis, here
 * listening on the pod's address with no persistence (what is acknowledged lives in memory only,
 * so only the migration keeps it). Waits until it answers; returns the pod's address.
 */
export async function startRedis(host: TestHost, name: string, rootfs: string): Promise<string> {
  const args = [
    "--bind",
    "0.0.0.0",
    "--protected-mode",
    "no",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "",
  ];
  // The uid Debian's package gave the redis user in this root (autopod run takes numbers).
  const entry = readFileSync(join(rootfs, "etc/passwd"), "utf8")
    .split("\n")
    .find((l) => l.startsWith("redis:"));
  const [, , uid, gid] = entry?.split(":") ?? [];
  if (!uid || !gid) throw new Error(`The services root ${rootfs} has no redis user: rebuild it (scripts/make-services-rootfs.sh)`);
  const r = await host.cli(["run", name, "--rootfs", rootfs, "--user", `${uid}:${gid}`, "--", "/usr/bin/redis-server", ...args]);
  if (r.exitCode !== 0) throw new Error(`autopod run ${name} failed: ${r.stderr}`);
  await waitFor(async () => (await redisCli(host, name, ["PING"])).stdout.trim() === "PONG", `redis-server in pod "${name}" never answered`, 60_000);
  return (await host.pod(name)).address.split("/")[0]!;
}

/** Debian's redis-cli, run in the pod (`autopod exec`): one command, its raw output. */
export function redisCli(host: TestHost, pod: string, command: string[]): ReturnType<TestHost["cli"]> {
  return host.cli(["exec", pod, "--", "/usr/bin/redis-cli", "--raw", ...command]);
}

/** The Redis client (test/fixtures/redis-client.ts), started in `netns`, pushing 1, 2, 3, ... to list `key`; `status()` reads its progress. */
export function startRedisClient(netns: string, dir: string, ip: string, key: string): RedisClient {
  const statusFile = join(dir, `redis-client-${ip}-${Date.now()}.json`);
  const proc = Bun.spawn(["nsenter", `--net=/run/netns/${netns}`, "--", BUN, join(REPO, "test/fixtures/redis-client.ts"), ip, "6379", key, statusFile], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const status = () => {
    try {
      return JSON.parse(readFileSync(statusFile, "utf8")) as RedisClientReport;
    } catch {
      return null;
    }
  };
  return { proc, status };
}

export interface RedisClient {
  proc: ReturnType<typeof Bun.spawn>;
  status(): RedisClientReport | null;
}

export interface RedisClientReport {
  open: boolean;
  /** The last value the server acknowledged (it answered with the list's length, equal to it). */
  acked: number;
  maxGapMs: number;
  errors: string[];
}

/** Stop the Redis client (its write in flight answered first) and read its report. */
export async function stopRedisClient(client: RedisClient): Promise<RedisClientReport> {
  client.proc.kill("SIGTERM");
  const out = await new Response(client.proc.stdout as ReadableStream).text();
  return JSON.parse(out.trim()) as RedisClientReport;
}

/** The HTTP keep-alive client (test/fixtures/http-keepalive-client.ts), started in the host's namespace; `status()` reads its progress. */
export function startHttpClient(host: TestHost, ip: string, conns: number): HttpClient {
  const statusFile = join(host.dir, `http-client-${ip}-${Date.now()}.json`);
  const proc = Bun.spawn(
    [
      "nsenter",
      `--net=/run/netns/${host.netns}`,
      "--",
      BUN,
      join(REPO, "test/fixtures/http-keepalive-client.ts"),
      ip,
      "80",
      "/file.txt",
      String(conns),
      statusFile,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const status = () => {
    try {
      return JSON.parse(readFileSync(statusFile, "utf8")) as HttpClientReport;
    } catch {
      return null;
    }
  };
  return { proc, status };
}

export interface HttpClient {
  proc: ReturnType<typeof Bun.spawn>;
  status(): HttpClientReport | null;
}

export interface HttpClientReport {
  connections: number;
  open: number;
  responses: number;
  bodyLength: number | null;
  maxGapMs: number;
  errors: string[];
}

/** Stop the HTTP client and read its report. */
export async function stopHttpClient(client: HttpClient): Promise<HttpClientReport> {
  client.proc.kill("SIGTERM");
  const out = await new Response(client.proc.stdout as ReadableStream).text();
  return JSON.parse(out.trim()) as HttpClientReport;
}

/**
 * Wait until a client's count passes `after` (its server answers again after a restore). A client's TCP
 * retransmission timer backs off while the pod is frozen, so it may take seconds longer than the restore.
 */
export async function waitForProgress(count: () => Promise<number>, after: number, what: string, timeoutMs = 90_000): Promise<void> {
  await waitFor(async () => (await count()) > after, `${what} made no progress past ${after} in ${timeoutMs / 1000} s`, timeoutMs);
}

export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(what);
    await Bun.sleep(200);
  }
}
