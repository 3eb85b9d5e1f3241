/**
 * Local API route of live migration: POST /v1/pods/NAME/migrate answers a
 * stream of JSON lines as the migration goes: {"progress": {...}} for each
 * phase and round, then one {"migrate": report} or {"error": {code, message}}.
 */
import type { Hono } from "hono";
import { z } from "zod";
import { AutopodError, errorMessage } from "../../errors.ts";
import type { Migrations } from "../../migrate/index.ts";
import { checkPodName } from "../../pods/validate.ts";
import { readJsonBody } from "./bounded-body.ts";

const MigrateBody = z
  .object({
    to: z.string().min(1).max(63),
    mode: z.enum(["auto", "precopy", "postcopy", "stop-and-copy"]).default("precopy"),
    maxRounds: z.number().int().min(0).max(64).default(8),
    maxDowntimeMs: z.number().int().min(1).max(600_000).nullable().default(null),
  })
  .strict();

/** A line now and then keeps the local socket's idle timeout away during a long phase. */
const HEARTBEAT_MS = 10_000;

export function addMigrateRoutes(app: Hono, { migrations }: { migrations: Migrations }): void {
  app.post("/v1/pods/:name/migrate", async (c) => {
    const name = c.req.param("name");
    checkPodName(name);
    const b = await readJsonBody(c.req.raw, MigrateBody, 4096);
    const enc = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        const send = (o: unknown) => {
          try {
            controller.enqueue(enc.encode(`${JSON.stringify(o)}\n`));
          } catch {
            // the client went away: the migration goes on to its end
          }
        };
        const beat = setInterval(() => send({ heartbeat: true }), HEARTBEAT_MS);
        try {
          const report = await migrations.migrate(name, b, (p) => send({ progress: p }));
          send({ migrate: report });
        } catch (e) {
          send({ error: { code: e instanceof AutopodError ? e.code : "internal", message: errorMessage(e) } });
        } finally {
          clearInterval(beat);
          try {
            controller.close();
          } catch {
            // already closed
          }
        }
      },
    });
    return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
  });
}
