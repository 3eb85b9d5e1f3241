/**
 * Local API routes for checkpoints and images. Exports stream out and imports
 * stream in, so these routes sit before the app's body limit: an import is
 * bounded by the export format's own limits and by free space instead.
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import type { Checkpointer } from "../../checkpoint/checkpointer.ts";
import { exportStream, importImage } from "../../checkpoint/export.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { ImageCatalogue } from "../../store/image-catalogue.ts";
import { describeZodError } from "./schemas.ts";

export const CheckpointBody = z
  .object({
    leaveRunning: z.boolean().default(false),
    excludeVolumes: z.array(z.string().min(1).max(4096)).max(64).default([]),
    killExec: z.boolean().default(false),
  })
  .strict();

export const RestoreBody = z
  .object({
    image: z.string().regex(/^[0-9a-f]{4,64}$/, "an image id (4 to 64 hex digits)"),
    name: z.string().min(1).max(200).optional(),
    ip: z.string().max(64).optional(),
  })
  .strict();

export const GcBody = z.object({}).strict();

async function json<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  let raw: unknown;
  try {
    const text = await c.req.text();
    if (text.length > 64 << 10) throw new InvalidArgumentError("The request body is too large");
    raw = text === "" ? {} : JSON.parse(text);
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw e;
    throw new InvalidArgumentError("The request body is not valid JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(`Invalid request: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

export interface ImageRouteDeps {
  checkpointer: Checkpointer;
  catalogue: ImageCatalogue;
}

export function addImageRoutes(app: Hono, { checkpointer, catalogue }: ImageRouteDeps): void {
  app.post("/v1/pods/:name/checkpoint", async (c) => {
    const req = await json(c, CheckpointBody);
    return c.json({ checkpoint: await checkpointer.checkpoint(c.req.param("name"), req) });
  });

  app.post("/v1/restore", async (c) => {
    const { image, name, ip } = await json(c, RestoreBody);
    return c.json({ restore: await checkpointer.restore(image, { name, ip }) }, 201);
  });

  app.get("/v1/images", (c) => c.json({ images: checkpointer.images() }));

  app.get("/v1/images/:id", (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    return c.json({ image: catalogue.info(id) });
  });

  app.delete("/v1/images/:id", (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    catalogue.remove(id);
    return c.json({ removed: id });
  });

  app.post("/v1/images/gc", async (c) => {
    await json(c, GcBody);
    return c.json({ gc: catalogue.gc() });
  });

  app.get("/v1/images/:id/export", (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    return new Response(exportStream(catalogue, id), { headers: { "content-type": "application/x-autopod-image" } });
  });

  app.post("/v1/images/import", async (c) => {
    const body = c.req.raw.body;
    if (!body) throw new InvalidArgumentError("The import has no body: send an exported image");
    return c.json({ import: await importImage(catalogue, body) }, 201);
  });
}
