/**
 * Peer routes that move images: "which of these chunks do you lack?",
 * receive an export (only the chunks lacking, each verified on arrival), and
 * send a manifest or an export of chosen chunks. Bodies are bounded here or
 * by the import's own checks (the manifest is bounded, and every chunk must
 * be one the manifest names, at the length it says).
 */
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { exportStream } from "../../checkpoint/export.ts";
import { importImage } from "../../checkpoint/import.ts";
import { InvalidArgumentError, NotFoundError } from "../../errors.ts";
import { HASH_BYTES } from "../../image/hash.ts";
import { ChunkWorkers } from "../../store/chunk-workers.ts";
import type { ImageCatalogue } from "../../store/image-catalogue.ts";
import type { ImageTrust } from "../../trust/image-trust.ts";
import { bitmapOf, hashViews, MAX_CHUNKS_PER_SELECTION, MAX_HASHES_PER_QUERY } from "../../transfer/bitmap.ts";
import { readJsonBody } from "../local/bounded-body.ts";
import { HeldImagesQuestionSchema } from "./schemas.ts";

export interface PeerImageDeps {
  catalogue: ImageCatalogue;
  /** Signatures go out with exports; images in are admitted as an operator's --trust would (a cluster member sent them). */
  trust: ImageTrust;
  /** Called with each image a peer sent, once it is committed here. */
  received?(id: string): void;
}

const IMAGE_ID = /^[0-9a-f]{64}$/;

function imageId(raw: string): string {
  if (!IMAGE_ID.test(raw)) throw new InvalidArgumentError(`Invalid image id "${raw.slice(0, 80)}": expected 64 hex digits`);
  return raw;
}

export function addPeerImageRoutes(app: Hono, { catalogue, trust, received }: PeerImageDeps): void {
  app.post(
    "/v1/chunks/missing",
    bodyLimit({
      maxSize: MAX_HASHES_PER_QUERY * HASH_BYTES,
      onError: (c) => c.json({ error: { code: "invalid_argument", message: `At most ${MAX_HASHES_PER_QUERY} hashes per question` } }, 413),
    }),
    async (c) => {
      const all = new Uint8Array(await c.req.arrayBuffer());
      if (all.byteLength % HASH_BYTES !== 0) throw new InvalidArgumentError(`The body is ${all.byteLength} bytes: not a list of ${HASH_BYTES}-byte hashes`);
      const views = hashViews(all);
      const lacking = new Set(catalogue.store.missing(views));
      return c.body(bitmapOf(views.length, (i) => lacking.has(views[i]!)) as Uint8Array<ArrayBuffer>, 200, { "content-type": "application/octet-stream" });
    },
  );

  app.post("/v1/images/import", async (c) => {
    const body = c.req.raw.body;
    if (!body) throw new InvalidArgumentError("The import has no body: send an exported image");
    const r = await importImage(catalogue, body, {
      admit: (id, sig) => trust.admitImport(id, sig, { trust: true }),
      keepPartial: true,
      // A manifest sent as a delta against an image this host holds (the pusher asked /v1/images/held).
      parentManifest: (id) => (catalogue.has(id) ? catalogue.manifestBytes(id) : null),
      isExpectedNew: true,
      threads: ChunkWorkers.shared(),
    });
    received?.(r.id);
    return c.json({ import: r }, 201);
  });

  /** Which of these images this host holds: the pusher's candidate parents for a manifest delta. */
  app.post("/v1/images/held", async (c) => {
    const { ids } = await readJsonBody(c.req.raw, HeldImagesQuestionSchema, 16 << 10);
    return c.json({ held: ids.filter((id) => catalogue.has(id)) });
  });

  app.get("/v1/images/:id/manifest", (c) => {
    const id = imageId(c.req.param("id"));
    if (!catalogue.has(id)) throw new NotFoundError(`No image ${id}`);
    return c.body(catalogue.manifestBytes(id) as Uint8Array<ArrayBuffer>, 200, { "content-type": "application/x-autopod-manifest" });
  });

  app.post(
    "/v1/images/:id/export",
    bodyLimit({
      maxSize: MAX_CHUNKS_PER_SELECTION / 8,
      onError: (c) => c.json({ error: { code: "invalid_argument", message: "The chunk selection is too large" } }, 413),
    }),
    async (c) => {
      const id = imageId(c.req.param("id"));
      if (!catalogue.has(id)) throw new NotFoundError(`No image ${id}`);
      const only = new Uint8Array(await c.req.arrayBuffer());
      // exportFrames checks the selection's size against the image before anything is read.
      // The puller verifies every chunk (pullImage imports it as a push is): not hashed here as well.
      const stream = exportStream(catalogue, id, { only, signature: trust.signatureOf(id), chunkIndexes: true, isVerifiedByReceiver: true });
      return new Response(stream, { headers: { "content-type": "application/x-autopod-image" } });
    },
  );
}
