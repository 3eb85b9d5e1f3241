/**
 * Local API routes for failpoints (src/debug/failpoints.ts). The agent adds
 * them only when started with --failpoints: for tests, never in production.
 */
import type { Hono } from "hono";
import { z } from "zod";
import { clearFailpoint, listFailpoints, setFailpoint } from "../../debug/failpoints.ts";
import { readJsonBody } from "./bounded-body.ts";

const SetBody = z.object({ actions: z.string().max(1000) }).strict();

export function addFailpointRoutes(app: Hono): void {
  app.get("/v1/debug/failpoints", (c) => c.json({ failpoints: listFailpoints() }));

  app.put("/v1/debug/failpoints/:name", async (c) => {
    const body = await readJsonBody(c.req.raw, SetBody, 64 << 10);
    setFailpoint(c.req.param("name"), body.actions);
    return c.json({ failpoint: listFailpoints().find((p) => p.name === c.req.param("name")) });
  });

  app.delete("/v1/debug/failpoints/:name", (c) => {
    clearFailpoint(c.req.param("name"));
    return c.json({ ok: true });
  });
}
