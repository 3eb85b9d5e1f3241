/**
 * The update routes through the real local app and LocalClient, over a unix
 * socket: the events kept, bad queries refused, and a follow that sees the
 * backlog, then new events, and picks up again when the agent comes back.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError } from "../../errors.ts";
import { createLogger } from "../../log.ts";
import type { PodRuntime } from "../../pods/runtime.ts";
import { EventLog, type UpdateEvent } from "../../update/events.ts";
import { UpdateMetrics } from "../../update/metrics.ts";
import type { UpdateService } from "../../update/service.ts";
import { createLocalApp } from "./app.ts";
import { LocalClient } from "./client.ts";
import { addUpdateRoutes } from "./update-routes.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-update-routes-"));
const events = new EventLog(join(dir, "events.jsonl"));
const metrics = new UpdateMetrics(null);
const update = {
  events,
  metrics,
  view: () => ({
    mode: "notify",
    trigger: ["security"],
    lock: { kind: "none", group: "default", id: "a" },
    window: { always: true, open: true, next_open: null, time_zone: "UTC" },
    cycle: null,
  }),
} as unknown as UpdateService;
const socket = join(dir, "api.sock");
const serve = () =>
  Bun.serve({
    unix: socket,
    fetch: createLocalApp({
      pods: {} as PodRuntime,
      log: createLogger({ write: () => {} }),
      routes: [(a) => addUpdateRoutes(a, { update })],
      info: { version: "test", pid: process.pid, stateDir: "/nonexistent", socket: "", bridge: "", subnet: "" },
    }).fetch,
  });
let server = serve();
const client = new LocalClient(socket);
afterAll(() => {
  void server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

test("the events kept, after a sequence number, the newest N; the policy view", async () => {
  for (let i = 1; i <= 5; i++) events.emit("info", "tick", `event ${i}`);
  expect((await client.events()).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
  expect((await client.events(3)).map((e) => e.seq)).toEqual([4, 5]);
  expect((await client.events(0, 2)).map((e) => e.seq)).toEqual([4, 5]);
  expect((await client.update()).mode).toBe("notify");
  const res = await fetch("http://autopod/v1/update/metrics", { unix: socket } as RequestInit);
  expect(await res.text()).toContain('autopod_update_phase{phase="idle"} 1');
});

test("bad queries are refused", async () => {
  for (const q of ["since=-1", "since=x", "limit=1e3", "follow=yes"]) {
    const res = await fetch(`http://autopod/v1/events?${q}`, { unix: socket } as RequestInit);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe(new InvalidArgumentError("x").code);
  }
});

test("follow: the backlog, then new events as they come, and on across an agent restart", async () => {
  const seen: UpdateEvent[] = [];
  const it = client.followEvents(3);
  const reading = (async () => {
    for await (const e of it) {
      seen.push(e);
      if (e.msg === "after restart") return;
    }
  })();
  while (seen.length < 2) await Bun.sleep(5);
  events.emit("warn", "live", "live one");
  while (seen.length < 3) await Bun.sleep(5);
  await server.stop(true);
  rmSync(socket, { force: true });
  events.emit("info", "gap", "while the agent was down");
  await Bun.sleep(300);
  server = serve();
  events.emit("info", "back", "after restart");
  await reading;
  expect(seen.map((e) => e.msg)).toEqual(["event 4", "event 5", "live one", "while the agent was down", "after restart"]);
}, 20_000);
