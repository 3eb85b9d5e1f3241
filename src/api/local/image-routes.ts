/**
 * Local API routes for checkpoints and images. Exports stream out and imports
 * stream in, so these routes sit before the app's body limit: an import is
 * bounded by the export format's own limits and by free space instead, and
 * the JSON routes bound their bodies themselves (readJsonBody).
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import type { Checkpointer } from "../../checkpoint/checkpointer.ts";
import { exportSize, exportStream } from "../../checkpoint/export.ts";
import { importImage } from "../../checkpoint/import.ts";
import { InvalidArgumentError, NotFoundError } from "../../errors.ts";
import { Yielder } from "../../yielder.ts";
import type { ImageCatalogue, ImageInfo } from "../../store/image-catalogue.ts";
import type { ImageOrigin, ImageTrust } from "../../trust/image-trust.ts";
import { readJsonBody } from "./bounded-body.ts";
import { EXPORT_BYTES_HEADER } from "./export-header.ts";
import { progressResponse, wantsProgress } from "./progress-stream.ts";

/** A row of `autopod images`: the catalogue's, with where the image came from. */
export interface ImageListing extends ImageInfo {
  origin: ImageOrigin;
  /** Key id of the image's signer, when it is signed. */
  signer: string | null;
}

/** The most a JSON body of these routes may be. */
export const MAX_JSON_BODY_BYTES = 64 << 10;

export const CheckpointBody = z
  .object({
    leaveRunning: z.boolean().default(false),
    excludeVolumes: z.array(z.string().min(1).max(4096)).max(64).default([]),
    killExec: z.boolean().default(false),
  })
  .strict();

/** `image`: an image id or prefix only; `ref`: that, or a pod name (its latest image). One of them. */
export const RestoreBody = z
  .object({
    image: z
      .string()
      .regex(/^[0-9a-f]{4,64}$/, "an image id (4 to 64 hex digits)")
      .optional(),
    ref: z.string().min(1).max(200).optional(),
    name: z.string().min(1).max(200).optional(),
    ip: z.string().max(64).optional(),
  })
  .strict()
  .refine((b) => (b.image === undefined) !== (b.ref === undefined), "one of image (an image id) or ref (an image id or a pod name)");

export const GcBody = z.object({}).strict();

function json<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  // Refused by its Content-Length, or while it streams in: never read whole first.
  return readJsonBody(c.req.raw, schema, MAX_JSON_BODY_BYTES);
}

export interface ImageRouteDeps {
  checkpointer: Checkpointer;
  catalogue: ImageCatalogue;
  trust: ImageTrust;
}

export function addImageRoutes(app: Hono, { checkpointer, catalogue, trust }: ImageRouteDeps): void {
  const listing = async (): Promise<ImageListing[]> => {
    const yielder = new Yielder();
    const images = await catalogue.listYielding(() => yielder.maybeYield());
    const out: ImageListing[] = [];
    for (const i of images) out.push({ ...i, ...(await trust.provenanceOf(i.id)) });
    return out;
  };

  app.post("/v1/pods/:name/checkpoint", async (c) => {
    const req = await json(c, CheckpointBody);
    const name = c.req.param("name");
    // With ?progress=true the answer is a progress stream (progress-stream.ts) ending in the result.
    if (wantsProgress(c.req.query("progress"))) return progressResponse((on) => checkpointer.checkpoint(name, req, on));
    return c.json({ checkpoint: await checkpointer.checkpoint(c.req.param("name"), req) });
  });

  app.post("/v1/restore", async (c) => {
    const { image, ref, name, ip } = await json(c, RestoreBody);
    const id = image ?? checkpointer.resolveRestoreRef(ref!);
    return c.json({ restore: await checkpointer.restore(id, { name, ip }) }, 201);
  });

  app.get("/v1/images", async (c) => c.json({ images: await listing() }));

  app.get("/v1/images/:id", async (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    const found = (await listing()).find((i) => i.id === id);
    if (found === undefined) throw new NotFoundError(`Image "${id}" is not in the catalogue`);
    return c.json({ image: found });
  });

  app.delete("/v1/images/:id", (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    catalogue.remove(id);
    trust.forget(id);
    return c.json({ removed: id });
  });

  app.post("/v1/images/gc", async (c) => {
    await json(c, GcBody);
    const yielder = new Yielder();
    if (wantsProgress(c.req.query("progress"))) return progressResponse((on) => catalogue.gcYielding(() => yielder.maybeYield(), on));
    return c.json({ gc: await catalogue.gcYielding(() => yielder.maybeYield()) });
  });

  app.get("/v1/images/:id/export", (c) => {
    const id = checkpointer.resolveImage(c.req.param("id"));
    const signature = trust.signatureOf(id);
    const stream = exportStream(catalogue, id, { signature });
    // The file's size ahead, for the CLI's progress line (the body streams, without a Content-Length).
    const size = String(exportSize(catalogue, id, signature !== null));
    return new Response(stream, { headers: { "content-type": "application/x-autopod-image", [EXPORT_BYTES_HEADER]: size } });
  });

  app.post("/v1/images/import", async (c) => {
    const body = c.req.raw.body;
    if (!body) throw new InvalidArgumentError("The import has no body: send an exported image");
    const t = c.req.query("trust");
    if (t !== undefined && t !== "true" && t !== "false") throw new InvalidArgumentError(`trust must be true or false (got "${t}")`);
    const admit = (id: string, sig: Parameters<ImageTrust["admitImport"]>[1]) => trust.admitImport(id, sig, { trust: t === "true" });
    const result = await importImage(catalogue, body, { admit });
    return c.json({ import: { ...result, ...(await trust.provenanceOf(result.id)) } }, 201);
  });
}
