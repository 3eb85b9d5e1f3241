/**
 * The pod routes of the local API in-process (Hono's app.request), over the
 * real PodRuntime with a fake host (src/pods/fake-host.ts): bodies validated
 * at the edge, domain errors mapped to their statuses, and the wire shapes the
 * client reads.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createLogger } from "../../log.ts";
import { FakeHost } from "../../pods/fake-host.ts";
import { PodRuntime } from "../../pods/runtime.ts";
import { PodStore } from "../../pods/store.ts";
import { createLocalApp } from "./app.ts";

let dir: string;
let store: PodStore;
let host: FakeHost;
let pods: PodRuntime;
let app: ReturnType<typeof createLocalApp>;
let logged: string[];
const info = { version: "test", pid: 1, stateDir: "/state", socket: "/run/autopod/api.sock", bridge: "br0", subnet: "10.213.7.0/29" };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "autopod-pod-routes-"));
  store = new PodStore(join(dir, "autopod.db"));
  host = new FakeHost();
  logged = [];
  const log = createLogger({ level: "debug", write: (line: string) => logged.push(line) });
  pods = new PodRuntime({ stateDir: dir, agentKey: "k1", bridge: "br0", subnet: "10.213.7.0/29", layer: "overlay", store, host, log });
  app = createLocalApp({ pods, info, log });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const WEB = { name: "web", rootfs: "/base", cmd: ["sleep", "1000"] };

// biome-ignore lint/suspicious/noExplicitAny: the tests read whatever JSON came back
type Json = any;

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const res = await app.request(path, init);
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** The status and the error body of a failed call. */
async function failure(method: string, path: string, body?: unknown): Promise<[number, string, string]> {
  const r = await call(method, path, body);
  return [r.status, r.json?.error?.code, r.json?.error?.message];
}

describe("pod routes", () => {
  test("health answers with the agent's info", async () => {
    expect(await call("GET", "/v1/health")).toEqual({ status: 200, json: { ok: true, ...info } });
  });

  test("create answers 201 with the running pod; list and get show it", async () => {
    const created = await call("POST", "/v1/pods", WEB);
    expect(created.status).toBe(201);
    expect(created.json.pod).toMatchObject({ name: "web", state: "running", pid: 1000, address: "10.213.7.2/29" });
    expect((await call("GET", "/v1/pods")).json.pods.map((p: { name: string }) => p.name)).toEqual(["web"]);
    expect(await call("GET", "/v1/pods/web")).toEqual({ status: 200, json: { pod: created.json.pod } });
  });

  test("bodies are validated at the edge, naming the field; nothing is created", async () => {
    const cases: Array<[unknown, RegExp]> = [
      ["{not json", /^The request body is not valid JSON$/],
      [{ ...WEB, cmd: [] }, /^Invalid request: cmd: .*a command/],
      [{ ...WEB, rootfs: "base" }, /^Invalid request: rootfs: an absolute path$/],
      [{ ...WEB, extra: 1 }, /^Invalid request: .*extra/],
      [{ ...WEB, memoryBytes: -1 }, /^Invalid request: memoryBytes: /],
      [{ ...WEB, volumes: [{ host: "/data", pod: "/d", readonly: "yes" }] }, /^Invalid request: volumes\.0\.readonly: /],
      [[1, 2], /^Invalid request: /],
    ];
    for (const [body, re] of cases) {
      const [status, code, message] = await failure("POST", "/v1/pods", body);
      expect([status, code]).toEqual([400, "invalid_argument"]);
      expect(message).toMatch(re);
    }
    expect(host.calls).toEqual([]);
    expect((await call("GET", "/v1/pods")).json.pods).toEqual([]);
  });

  test("the runtime's own validation comes back as 400 with its message", async () => {
    expect(await failure("POST", "/v1/pods", { ...WEB, name: "Bad" })).toEqual([400, "invalid_argument", expect.stringContaining('Invalid pod name "Bad"')]);
    expect(await failure("POST", "/v1/pods", { ...WEB, rootfs: "/nope" })).toEqual([
      400,
      "invalid_argument",
      expect.stringContaining('Root file system "/nope" does not exist'),
    ]);
  });

  test("domain errors keep their status: not found 404, already exists 409, conflict 409, precondition 412", async () => {
    expect(await failure("GET", "/v1/pods/ghost")).toEqual([404, "not_found", 'No pod named "ghost"']);
    expect(await failure("POST", "/v1/pods/ghost/stop", {})).toEqual([404, "not_found", 'No pod named "ghost"']);
    expect(await failure("DELETE", "/v1/pods/ghost")).toEqual([404, "not_found", 'No pod named "ghost"']);
    await call("POST", "/v1/pods", WEB);
    expect(await failure("POST", "/v1/pods", WEB)).toEqual([409, "already_exists", 'Pod "web" already exists']);
    expect(await failure("DELETE", "/v1/pods/web")).toEqual([409, "conflict", 'Pod "web" is running: stop it first, or use --force']);
    host.failLaunch = "no such file";
    const [status, code, message] = await failure("POST", "/v1/pods", { ...WEB, name: "web2" });
    expect([status, code]).toEqual([412, "precondition_failed"]);
    expect(message).toBe('Cannot start pod "web2": no such file');
  });

  test("an unexpected failure is a 500 with the message, and is logged", async () => {
    await call("POST", "/v1/pods", WEB);
    // The fake host cannot exec: a plain Error, not a domain one.
    expect(await failure("POST", "/v1/pods/web/exec", { cmd: ["true"] })).toEqual([500, "internal", "not in the fake"]);
    expect(logged.some((l) => l.includes("request failed") && l.includes("not in the fake"))).toBe(true);
  });

  test("stop: the grace period is bounded, and the pod is stopped", async () => {
    await call("POST", "/v1/pods", WEB);
    const [status, code, message] = await failure("POST", "/v1/pods/web/stop", { timeoutSeconds: 1000 });
    expect([status, code]).toEqual([400, "invalid_argument"]);
    expect(message).toMatch(/^Invalid request: timeoutSeconds: /);
    const stopped = await call("POST", "/v1/pods/web/stop", { timeoutSeconds: 0 });
    expect(stopped.status).toBe(200);
    expect(stopped.json.pod.state).toMatch(/^(stopped|exited)$/);
    expect(host.calls).toContain("signal 1000 SIGKILL");
  });

  test("remove: force must be true or false; with it a running pod goes", async () => {
    await call("POST", "/v1/pods", WEB);
    expect(await failure("DELETE", "/v1/pods/web?force=yes")).toEqual([400, "invalid_argument", 'force must be true or false (got "yes")']);
    expect(await call("DELETE", "/v1/pods/web?force=true")).toEqual({ status: 200, json: { removed: "web" } });
    expect(await failure("GET", "/v1/pods/web")).toEqual([404, "not_found", 'No pod named "web"']);
  });

  test("logs: from an offset; a bad offset is refused", async () => {
    await call("POST", "/v1/pods", WEB);
    const log = host.logFile({ layerDir: join(dir, "pods/web") });
    const file = join(log.dir, log.rel);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, "hello\nworld\n");
    const all = await app.request("/v1/pods/web/logs");
    expect(all.status).toBe(200);
    expect(await all.text()).toBe("hello\nworld\n");
    expect(await (await app.request("/v1/pods/web/logs?offset=6")).text()).toBe("world\n");
    for (const bad of ["-1", "1.5", "x"]) {
      const [status, code, message] = await failure("GET", `/v1/pods/web/logs?offset=${bad}`);
      expect([status, code, message]).toEqual([400, "invalid_argument", `offset must be a byte count (got "${bad}")`]);
    }
  });

  test("an unknown endpoint is a 404 naming it; a body over 1 MiB is a 413", async () => {
    expect(await failure("GET", "/v1/nope")).toEqual([404, "not_found", "No such endpoint: GET /v1/nope"]);
    expect(await failure("PUT", "/v1/pods")).toEqual([404, "not_found", "No such endpoint: PUT /v1/pods"]);
    const big = JSON.stringify({ ...WEB, env: { X: "x".repeat(2 << 20) } });
    expect(await failure("POST", "/v1/pods", big)).toEqual([413, "invalid_argument", "The request body is too large"]);
    expect(host.calls).toEqual([]);
  });
});
