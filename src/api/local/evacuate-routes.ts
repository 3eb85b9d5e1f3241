/**
 * Local API routes of evacuation (src/evacuate/): POST /v1/evacuate moves
 * every running pod off this host; POST /v1/evacuate/return brings them home.
 * With ?progress=true each answers a stream of JSON lines as it goes:
 * {"progress": {"message", "pod"?}} lines, then one {"result": report} or
 * {"error": {code, message}}; without, one JSON answer at the end.
 */
import type { Hono } from "hono";
import { z } from "zod";
import { AutopodError, errorMessage } from "../../errors.ts";
import type { EvacuateEvent, Evacuations } from "../../evacuate/index.ts";
import { readJsonBody } from "./bounded-body.ts";
import { wantsProgress } from "./progress-stream.ts";

const EvacuateBody = z
  .object({
    to: z.array(z.string().min(1).max(63)).max(256).optional(),
    parallel: z.number().int().min(1).max(16).optional(),
    dryRun: z.boolean().optional(),
    suspendFallback: z.boolean().optional(),
  })
  .strict();

/** A line now and then keeps the local socket's idle timeout away during a long migration. */
const HEARTBEAT_MS = 10_000;

function eventStream<T>(work: (onEvent: (e: EvacuateEvent) => void) => Promise<T>): Response {
  const enc = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      let isGone = false;
      const send = (o: unknown) => {
        if (isGone) return;
        try {
          controller.enqueue(enc.encode(`${JSON.stringify(o)}\n`));
        } catch {
          isGone = true; // the client went away: the evacuation goes on to its end
        }
      };
      const beat = setInterval(() => send({ heartbeat: true }), HEARTBEAT_MS);
      try {
        send({ result: await work((e) => send({ progress: e })) });
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
}

export function addEvacuateRoutes(app: Hono, { evacuations }: { evacuations: Evacuations }): void {
  app.post("/v1/evacuate", async (c) => {
    const isStreamed = wantsProgress(c.req.query("progress"));
    const b = await readJsonBody(c.req.raw, EvacuateBody, 16_384);
    if (isStreamed) return eventStream((on) => evacuations.evacuate(b, on));
    return c.json(await evacuations.evacuate(b));
  });

  app.post("/v1/evacuate/return", async (c) => {
    const isStreamed = wantsProgress(c.req.query("progress"));
    await readJsonBody(c.req.raw, z.object({}).strict(), 1024);
    if (isStreamed) return eventStream((on) => evacuations.bringHome(on));
    return c.json(await evacuations.bringHome());
  });

  app.get("/v1/evacuate", (c) => c.json({ ...evacuations.maintenance(), away: evacuations.awayPods() }));
}
