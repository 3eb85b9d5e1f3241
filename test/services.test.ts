/**
 * Real services from Debian's packages in pods, through checkpoint and restore while real clients work
 * against them: nginx (a master as root, workers as www-data) with keep-alive clients, and MariaDB (as
 * mysql) with a session committing throughout. Needs root, the services root
 * (scripts/make-services-rootfs.sh; built when missing) and autopod's CRIU (scripts/install-criu.sh).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isRoot, rootTest } from "./_support.ts";
import { TestHost } from "./_pods.ts";
import {
  acks,
  longestGapMs,
  nginxFiles,
  servicesRootfs,
  sql,
  startHttpClient,
  startMariadb,
  startNginx,
  startSqlClient,
  stopHttpClient,
  waitForProgress,
} from "./_services.ts";
import { credsOf, podTree } from "./_users.ts";

const T = 300_000;
let host: TestHost;
let rootfs: string;
const scratch = mkdtempSync(join(tmpdir(), "autopod-services-"));

beforeAll(async () => {
  if (!isRoot) return;
  rootfs = servicesRootfs();
  host = await TestHost.start("s");
}, 600_000);
afterAll(async () => {
  await host?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** The uids of a pod's processes by name: { nginx: ["0", "33", "33"] }. */
function uidsByCommand(pid: number): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of podTree(pid)) {
    const name = readFileSync(`/proc/${p}/comm`, "utf8").trim();
    (out[name] ??= []).push(credsOf(p).uid.split(" ")[0]!);
  }
  for (const v of Object.values(out)) v.sort();
  return out;
}

describe("nginx", () => {
  rootTest(
    "a master as root and workers as www-data; keep-alive clients fetching in a loop lose no request and keep their connections through a checkpoint and restore",
    async () => {
      const files = nginxFiles(scratch);
      const ip = await startNginx(host, "web", rootfs, files);
      expect(uidsByCommand((await host.pod("web")).pid!)).toEqual({ nginx: ["0", "33", "33"] });
      const client = startHttpClient(host, ip, 4);
      await Bun.sleep(1000);
      const id = await host.ok(["checkpoint", "web"]);
      const atDump = client.status()!.responses;
      await host.ok(["restore", id]);
      await waitForProgress(async () => client.status()?.responses ?? 0, atDump + 200, "the HTTP client");
      const report = await stopHttpClient(client);
      expect(report).toMatchObject({ connections: 4, open: 4, errors: [], bodyLength: 16384 });
      expect(report.responses).toBeGreaterThan(100);
      expect(uidsByCommand((await host.pod("web")).pid!)).toEqual({ nginx: ["0", "33", "33"] });
      console.log(`nginx: ${report.responses} responses, longest gap ${report.maxGapMs} ms`);
    },
    T,
  );
});

describe("MariaDB", () => {
  rootTest(
    "with its default native AIO it holds an io_uring: checkpoint refuses the pod, naming the cause and the setting that avoids it",
    async () => {
      await startMariadb(host, "db-uring", rootfs, { nativeAio: true });
      const r = await host.cli(["checkpoint", "db-uring"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(
        /Cannot checkpoint pod "db-uring": pid \d+ \(mariadbd\) uses io_uring, which CRIU cannot dump; start MariaDB with innodb_use_native_aio = 0/,
      );
      // Refused before anything changed: it still answers.
      expect((await host.pod("db-uring")).state).toBe("running");
      expect((await sql(host, "db-uring", "SELECT 1")).stdout.trim()).toBe("1");
      await host.ok(["rm", "--force", "db-uring"]);
    },
    T,
  );

  rootTest(
    "runs as mysql; a session committing throughout keeps its connection, and every acknowledged commit is there after a checkpoint and restore",
    async () => {
      const ip = await startMariadb(host, "db", rootfs, { nativeAio: false });
      expect(uidsByCommand((await host.pod("db")).pid!)).toEqual({ mariadbd: ["100"] });
      await startSqlClient(host, "dbclient", rootfs, ip);
      await Bun.sleep(1500);
      const before = await acks(host, "dbclient");
      expect(before.length).toBeGreaterThan(10);
      const id = await host.ok(["checkpoint", "db"]);
      // The server is gone until the restore: what the client has now is all it was acknowledged before the dump.
      const atDump = (await acks(host, "dbclient")).length;
      await host.ok(["restore", id]);
      await waitForProgress(async () => (await acks(host, "dbclient")).length, atDump + 50, "the MariaDB session");
      const seen = await acks(host, "dbclient");
      // The same session went on: acknowledgements 1, 2, 3, ... with none missing, past the checkpoint.
      expect(seen.map((a) => a.id)).toEqual(seen.map((_, i) => i + 1));
      expect(atDump).toBeGreaterThanOrEqual(before.length);
      const err = await host.cli(["exec", "dbclient", "--", "cat", "/client.err"]);
      expect(err.stdout).toBe("");
      // Every acknowledged commit is in the table.
      const last = seen.at(-1)!.id;
      const stored = await sql(host, "db", `SELECT COUNT(*), MIN(id), MAX(id) >= ${last} FROM t.acked WHERE id <= ${last}`);
      expect(stored.stdout.trim()).toBe(`${last}\t1\t1`);
      console.log(`MariaDB: ${last} commits acknowledged, longest gap ${longestGapMs(seen)} ms`);
    },
    T,
  );
});
