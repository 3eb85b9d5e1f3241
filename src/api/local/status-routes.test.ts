/**
 * The status routes through the real local app and LocalClient, over a unix
 * socket, with a StatusService whose collector the test controls.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError, UnavailableError } from "../../errors.ts";
import { createLogger } from "../../log.ts";
import type { PodRuntime } from "../../pods/runtime.ts";
import { buildReport, type StatusReport } from "../../status/report.ts";
import { StatusService } from "../../status/service.ts";
import { createLocalApp } from "./app.ts";
import { LocalClient } from "./client.ts";
import { addStatusRoutes, PROMETHEUS_CONTENT_TYPE } from "./status-routes.ts";

let calls = 0;
let gate: { resolve: (r: StatusReport) => void; reject: (e: Error) => void } | null = null;
const collect = () =>
  new Promise<StatusReport>((resolve, reject) => {
    calls++;
    gate = { resolve, reject };
  });
const finish = async (error?: Error) => {
  while (!gate) await Bun.sleep(1);
  const g = gate;
  gate = null;
  if (error) g.reject(error);
  else g.resolve(buildReport(`host-${calls}`, new Date(), 3, []));
  await Bun.sleep(5);
};

const service = new StatusService({ collect, refreshSeconds: 3600, changes: () => ({ arm() {}, close() {}, watching: [] }) });
const log = createLogger({ write: () => {} });
const app = createLocalApp({
  pods: {} as PodRuntime,
  log,
  routes: [(a) => addStatusRoutes(a, { status: service })],
  info: { version: "test", pid: process.pid, stateDir: "/nonexistent", socket: "", bridge: "", subnet: "" },
});
const dir = mkdtempSync(join(tmpdir(), "autopod-status-routes-"));
const socket = join(dir, "api.sock");
const server = Bun.serve({ unix: socket, fetch: app.fetch });
const client = new LocalClient(socket);
afterAll(() => {
  service.stop();
  void server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

test("before the first report: null and refreshing; metrics are unavailable", async () => {
  service.start();
  while (calls === 0) await Bun.sleep(1);
  const s = await client.status();
  expect(s).toMatchObject({ report: null, checked_at: null, refreshing: true, last_error: null });
  const err = await client.statusMetrics().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UnavailableError);
  expect((err as Error).message).toContain("the first check is still running");
});

test("the cached report, at once; metrics as Prometheus text", async () => {
  await finish();
  const s = await client.status();
  expect(s.report?.host).toBe("host-1");
  expect(s.checked_at).toBe(s.report!.checked_at);
  expect(s.refreshing).toBe(false);
  const res = await fetch("http://autopod/v1/status/metrics", { unix: socket } as RequestInit);
  expect(res.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
  const text = await res.text();
  expect(text).toContain('autopod_status_info{host="host-1"} 1');
  expect(text).toContain("autopod_status_refreshing 0");
  expect(text).toContain('autopod_status_collections_total{reason="startup"} 1');
  expect(await client.statusMetrics()).toBe(text);
});

test("?refresh=true waits for a new report", async () => {
  let done = false;
  const p = client.status(true).then((s) => {
    done = true;
    return s;
  });
  while (calls < 2) await Bun.sleep(1);
  await Bun.sleep(20);
  expect(done).toBe(false);
  expect((await client.status()).refreshing).toBe(true);
  await finish();
  const s = await p;
  expect(s.report?.host).toBe("host-2");
  expect(s.collections.request).toBe(1);
});

test("a refresh that fails is a 503; the cached report stays, with the error", async () => {
  const p = client.status(true).catch((e: unknown) => e);
  await finish(new Error("apt-get exploded"));
  const err = await p;
  expect(err).toBeInstanceOf(UnavailableError);
  expect((err as Error).message).toBe("The status refresh failed: apt-get exploded");
  const s = await client.status();
  expect(s.report?.host).toBe("host-2");
  expect(s.last_error?.message).toBe("apt-get exploded");
  expect(await client.statusMetrics()).toContain("autopod_status_refresh_failed 1");
});

test("refresh must be true or false", async () => {
  const res = await fetch("http://autopod/v1/status?refresh=1", { unix: socket } as RequestInit);
  expect(res.status).toBe(400);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(new InvalidArgumentError("").code);
  expect(body.error.message).toContain('refresh must be true or false (got "1")');
});
