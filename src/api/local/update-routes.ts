/**
 * Local API routes of the update cycle:
 *   GET /v1/update                 the policy in force, the window, the cycle under way
 *   GET /v1/events?since=N&limit=N {events: UpdateEvent[]}, oldest first
 *   GET /v1/events?follow=true     the same as JSON lines, then new ones as they come
 *   GET /v1/update/metrics         the cycle's counters as Prometheus text
 */
import type { Hono } from "hono";
import { InvalidArgumentError } from "../../errors.ts";
import type { UpdateEvent } from "../../update/events.ts";
import type { UpdateService } from "../../update/service.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./status-routes.ts";

/** A followed stream sends an empty line this often, so an idle connection is not dropped. */
const HEARTBEAT_MS = 30_000;

function count(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!/^\d{1,15}$/.test(raw) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${name} must be a whole number (got "${raw}")`);
  return n;
}

export function addUpdateRoutes(app: Hono, { update }: { update: UpdateService }): void {
  app.get("/v1/update", (c) => c.json({ update: update.view() }));

  app.get("/v1/update/metrics", (c) => c.body(update.metrics.format(), 200, { "content-type": PROMETHEUS_CONTENT_TYPE }));

  app.get("/v1/events", (c) => {
    const since = count("since", c.req.query("since"), 0);
    const limit = count("limit", c.req.query("limit"), 1000);
    const follow = c.req.query("follow");
    if (follow !== undefined && follow !== "true" && follow !== "false") throw new InvalidArgumentError(`follow must be true or false (got "${follow}")`);
    const backlog = update.events.list(since, limit);
    if (follow !== "true") return c.json({ events: backlog });
    const enc = new TextEncoder();
    let unsubscribe = () => {};
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    const end = () => {
      unsubscribe();
      clearInterval(heartbeat);
    };
    const stream = new ReadableStream<Uint8Array>({
      start(ctrl) {
        let last = backlog.at(-1)?.seq ?? since;
        const send = (e: UpdateEvent) => {
          if (e.seq <= last) return;
          last = e.seq;
          try {
            ctrl.enqueue(enc.encode(JSON.stringify(e) + "\n"));
          } catch {
            end();
          }
        };
        unsubscribe = update.events.subscribe(send);
        for (const e of backlog) ctrl.enqueue(enc.encode(JSON.stringify(e) + "\n"));
        // Events between the backlog's read and the subscription.
        for (const e of update.events.list(last)) send(e);
        heartbeat = setInterval(() => {
          try {
            ctrl.enqueue(enc.encode("\n"));
          } catch {
            end();
          }
        }, HEARTBEAT_MS);
        c.req.raw.signal.addEventListener("abort", () => {
          end();
          try {
            ctrl.close();
          } catch {
            // closed already
          }
        });
      },
      cancel: end,
    });
    return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
  });
}
