/** The failpoint routes through the real local app, in process (app.request). */
import { afterEach, expect, test } from "bun:test";
import { enableFailpoints, failpoint, resetFailpoints } from "../../debug/failpoints.ts";
import { createLogger } from "../../log.ts";
import type { PodRuntime } from "../../pods/runtime.ts";
import { createLocalApp } from "./app.ts";
import { addFailpointRoutes } from "./failpoint-routes.ts";

afterEach(() => resetFailpoints());

function appWith(routes: boolean) {
  return createLocalApp({
    pods: {} as PodRuntime,
    log: createLogger({ write: () => {} }),
    routes: routes ? [addFailpointRoutes] : [],
    info: { version: "test", pid: process.pid, stateDir: "/nonexistent", socket: "", bridge: "", subnet: "" },
  });
}

interface Answer {
  failpoint?: Record<string, unknown>;
  failpoints?: Array<Record<string, unknown>>;
  error?: { code: string; message: string };
}
const json = async (r: Response) => (await r.json()) as Answer;
const put = (actions: unknown) => ({ method: "PUT", body: JSON.stringify({ actions }) });

test("an agent without --failpoints has no failpoint routes", async () => {
  const r = await appWith(false).request("/v1/debug/failpoints");
  expect(r.status).toBe(404);
});

test("set, list and clear a failpoint", async () => {
  enableFailpoints("");
  const app = appWith(true);
  const set = await app.request("/v1/debug/failpoints/restore.prepared", put("1*error(disk gone)"));
  expect(set.status).toBe(200);
  expect((await json(set)).failpoint).toMatchObject({ name: "restore.prepared", actions: "1*error(disk gone)", hits: 0 });
  expect(() => failpoint("restore.prepared")).toThrow('disk gone (failpoint "restore.prepared")');
  const list = (await json(await app.request("/v1/debug/failpoints"))).failpoints!;
  expect(list.find((p) => p.name === "restore.prepared")).toMatchObject({ actions: "1*error(disk gone)", hits: 1 });
  expect((await app.request("/v1/debug/failpoints/restore.prepared", { method: "DELETE" })).status).toBe(200);
  expect(failpoint("restore.prepared")).toBeUndefined();
});

test("a misspelt point or action is refused with a 400 that names it", async () => {
  enableFailpoints("");
  const app = appWith(true);
  const r = await app.request("/v1/debug/failpoints/restore.prepard", put("kill"));
  expect(r.status).toBe(400);
  expect((await json(r)).error!.message).toStartWith('No failpoint "restore.prepard": did you mean one of restore.files-made');
  const bad = await app.request("/v1/debug/failpoints/restore.prepared", put("explode"));
  expect(bad.status).toBe(400);
  expect((await json(bad)).error!.message).toContain('Unknown failpoint action "explode"');
  const notString = await app.request("/v1/debug/failpoints/restore.prepared", put(3));
  expect(notString.status).toBe(400);
});
