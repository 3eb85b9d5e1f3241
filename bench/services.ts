#!/usr/bin/env bun
/**
 * Real services through checkpoint and restore, as JSON on stdout:
 *   node_modules/.bin/bun bench/services.ts [--services nginx,mariadb]
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first; the services root comes from
 * scripts/make-services-rootfs.sh, built when missing; AUTOPOD_CRIU names another CRIU build).
 *
 * For each service, on a test host, while its client works against it:
 * - nginx (master as root, 2 workers as www-data), 4 keep-alive connections fetching a 16 KiB file in a loop;
 * - MariaDB 10.11 (as mysql, innodb_use_native_aio = 0, Debian's other defaults: a 128 MiB buffer pool),
 *   one session committing a one-row transaction every ~10 ms;
 * two rounds of stop-checkpoint then restore, 2 s apart. Per round: the agent's checkpoint and restore
 * figures (total, freeze, CRIU's dump and restore), the image's size (logicalBytes) and what it stored new
 * (newBytes, and their share: the second round's is what a repeated checkpoint costs). Per service: the
 * client's longest gap (between two responses, or two acknowledged commits by the server's clock), its
 * errors, and for MariaDB whether every acknowledged commit is in the table afterwards.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestHost } from "../test/_pods.ts";
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
} from "../test/_services.ts";
import { round } from "./_stats.ts";

const args = process.argv.slice(2);
const at = args.indexOf("--services");
const services = (at >= 0 ? (args[at + 1] ?? "") : "nginx,mariadb").split(",").filter(Boolean);
for (const s of services) {
  if (s !== "nginx" && s !== "mariadb") {
    console.error(`bench/services.ts: unknown service "${s}" (nginx, mariadb)`);
    process.exit(2);
  }
}
if (process.getuid?.() !== 0) {
  console.error("bench/services.ts: needs root (namespaces, CRIU)");
  process.exit(1);
}

interface Round {
  /** From the end of the restore until the client's next response or acknowledged commit (its TCP retransmission backoff). */
  clientBackAfterRestoreMs: number;
  /** From the start of the checkpoint until then. */
  checkpointToClientBackMs: number;
  checkpointMs: number;
  freezeMs: number;
  dumpMs: number;
  imageBytes: number;
  newBytes: number;
  newShare: number;
  restoreMs: number;
  criuRestoreMs: number;
}

/** A stop-checkpoint and restore while the client works; returns once the client's count moves again. */
async function round2(host: TestHost, pod: string, count: () => Promise<number>): Promise<Round> {
  const t0 = performance.now();
  const cp = JSON.parse(await host.ok(["checkpoint", pod, "--json"], 600_000));
  const atDump = await count();
  const rs = JSON.parse(await host.ok(["restore", cp.id, "--json"], 600_000));
  const restoredAt = performance.now();
  await waitForProgress(count, atDump, `the client of ${pod}`);
  return {
    clientBackAfterRestoreMs: round(performance.now() - restoredAt, 0),
    checkpointToClientBackMs: round(performance.now() - t0, 0),
    checkpointMs: round(cp.totalMs, 1),
    freezeMs: round(cp.freezeMs, 1),
    dumpMs: round(cp.dumpMs, 1),
    imageBytes: cp.logicalBytes,
    newBytes: cp.newBytes,
    newShare: round(cp.newBytes / cp.logicalBytes, 4),
    restoreMs: round(rs.totalMs, 1),
    criuRestoreMs: round(rs.criuMs, 1),
  };
}

const rootfs = servicesRootfs();
const scratch = mkdtempSync(join(tmpdir(), "autopod-bench-services-"));
const host = await TestHost.start("b");
const out: Record<string, unknown> = {
  cpus: navigator.hardwareConcurrency,
  loadavg: (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).map(Number),
};
try {
  if (services.includes("nginx")) {
    const ip = await startNginx(host, "web", rootfs, nginxFiles(scratch));
    const client = startHttpClient(host, ip, 4);
    const responses = async () => client.status()?.responses ?? 0;
    await Bun.sleep(2000);
    const rounds: Round[] = [];
    for (let i = 0; i < 2; i++) {
      rounds.push(await round2(host, "web", responses));
      await Bun.sleep(2000);
    }
    const c = await stopHttpClient(client);
    out.nginx = { rounds, client: { connections: c.connections, stillOpen: c.open, responses: c.responses, longestGapMs: c.maxGapMs, errors: c.errors } };
    await host.ok(["rm", "--force", "web"]);
  }
  if (services.includes("mariadb")) {
    const ip = await startMariadb(host, "db", rootfs, { nativeAio: false });
    await startSqlClient(host, "dbclient", rootfs, ip);
    const commits = async () => (await acks(host, "dbclient")).length;
    await Bun.sleep(2000);
    const rounds: Round[] = [];
    for (let i = 0; i < 2; i++) {
      rounds.push(await round2(host, "db", commits));
      await Bun.sleep(2000);
    }
    const seen = await acks(host, "dbclient");
    const last = seen.at(-1)?.id ?? 0;
    const stored = (await sql(host, "db", `SELECT COUNT(*) FROM t.acked WHERE id <= ${last}`)).stdout.trim();
    out.mariadb = {
      rounds,
      client: {
        acknowledgedCommits: last,
        inOrder: seen.every((a, i) => a.id === i + 1),
        allAcknowledgedStored: stored === String(last),
        longestGapMs: longestGapMs(seen),
      },
    };
  }
} finally {
  await host.dispose();
  rmSync(scratch, { recursive: true, force: true });
}
console.log(JSON.stringify(out, null, 2));
