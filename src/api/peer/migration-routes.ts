/**
 * Peer routes of live migration (src/migrate/): the source asks the
 * destination to restore a pod held stopped, then to resume or drop it; a
 * destination holding a copy asks the source what became of the migration.
 * Only cluster members reach these (mutual TLS); every input is checked here.
 *
 * Who sent a request: Bun.serve checks the client's certificate in the
 * handshake but does not show it to the handler (oven-sh/bun#14097), so the
 * `source` a restore names is confirmed by asking that host, over a
 * connection whose server certificate must name it: it must answer that it
 * drives this migration, of this pod, to this host (destination.ts). The
 * restore carries a secret the source made; resume and abort must carry it
 * back, so no other member can run or drop a held copy.
 */
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { timeout } from "hono/timeout";
import { z } from "zod";
import { InvalidArgumentError } from "../../errors.ts";
import { isMigrationId } from "../../migrate/journal.ts";
import type { Migrations } from "../../migrate/index.ts";
import { checkPodName } from "../../pods/validate.ts";
import { readJsonBody } from "../local/bounded-body.ts";

/** A held restore reads a whole image into place: as long as the disk needs, within reason. */
export const MIGRATION_RESTORE_TIMEOUT_MS = 600_000;
/** Resume, abort and outcome answer at once. */
const CONTROL_TIMEOUT_MS = 30_000;
const MAX_BODY = 4096;
/** How long a stage-state request waits for the staging under way: well within the peer client's own timeout (PEER_CLIENT_TIMEOUT_MS, 10 s). */
export const STAGE_WAIT_MS = 5_000;

const RestoreBody = z
  .object({
    pod: z.string().max(63),
    image: z.string().regex(/^[0-9a-f]{64}$/, "a full image id (64 hex digits)"),
    source: z.string().max(63),
    rounds: z.array(z.string().regex(/^[0-9a-f]{64}$/, "a full image id (64 hex digits)")).max(64),
    secret: z.string().regex(/^[0-9a-f]{64}$/, "64 hex digits"),
    pages: z
      .object({ port: z.number().int().min(1).max(65535) })
      .strict()
      .optional(),
  })
  .strict();
const StageBody = z
  .object({
    pod: z.string().max(63),
    image: z.string().regex(/^[0-9a-f]{64}$/, "a full image id (64 hex digits)"),
    source: z.string().max(63),
  })
  .strict();
const SecretBody = z.object({ secret: z.string().regex(/^[0-9a-f]{64}$/, "64 hex digits") }).strict();

export interface PeerMigrationDeps {
  migrations: Migrations;
  /** Whether `name` is a peer of this host (the only hosts a pod may come from). */
  isPeer(name: string): boolean;
}

function migrationId(raw: string): string {
  if (!isMigrationId(raw)) throw new InvalidArgumentError(`Invalid migration id "${raw.slice(0, 80)}": expected a UUID`);
  return raw;
}

export function addPeerMigrationRoutes(app: Hono, { migrations, isPeer }: PeerMigrationDeps): void {
  app.use("/v1/migrations/:id/restore", timeout(MIGRATION_RESTORE_TIMEOUT_MS));
  app.use("/v1/migrations/:id/resume", timeout(CONTROL_TIMEOUT_MS));
  app.use("/v1/migrations/:id/abort", timeout(CONTROL_TIMEOUT_MS));
  app.use("/v1/migrations/:id", timeout(CONTROL_TIMEOUT_MS));
  const limit = bodyLimit({
    maxSize: MAX_BODY,
    onError: (c) => c.json({ error: { code: "invalid_argument", message: "The request body is too large" } }, 413),
  });

  app.post("/v1/migrations/:id/restore", limit, async (c) => {
    const id = migrationId(c.req.param("id"));
    // Bun.serve closes a connection idle for 10 s, and a held restore answers only when it is ready
    // (a big pod on a busy host takes longer): no idle limit for this request; the route's timeout stays.
    (c.env as { timeout?: (req: Request, seconds: number) => void } | undefined)?.timeout?.(c.req.raw, 0);
    const b = await readJsonBody(c.req.raw, RestoreBody, MAX_BODY);
    checkPodName(b.pod);
    if (!isPeer(b.source)) throw new InvalidArgumentError(`"${b.source.slice(0, 63)}" is not a peer of this host: a pod migrates only from a peer`);
    return c.json({ ready: await migrations.destination.restore(id, b) });
  });

  app.use("/v1/migrations/:id/stage", timeout(CONTROL_TIMEOUT_MS));
  app.post("/v1/migrations/:id/stage", limit, async (c) => {
    const id = migrationId(c.req.param("id"));
    const b = await readJsonBody(c.req.raw, StageBody, MAX_BODY);
    checkPodName(b.pod);
    if (!isPeer(b.source)) throw new InvalidArgumentError(`"${b.source.slice(0, 63)}" is not a peer of this host: a pod migrates only from a peer`);
    await migrations.destination.stage(id, b);
    return c.json({ staging: true }, 202);
  });

  /** Whether the newest staged round is made; waits for it up to STAGE_WAIT_MS (the source asks before it freezes). */
  app.get("/v1/migrations/:id/stage", async (c) => {
    const id = migrationId(c.req.param("id"));
    return c.json({ state: await migrations.destination.stageState(id, STAGE_WAIT_MS) });
  });

  app.post("/v1/migrations/:id/resume", limit, async (c) => {
    const id = migrationId(c.req.param("id"));
    const { secret } = await readJsonBody(c.req.raw, SecretBody, MAX_BODY);
    await migrations.destination.resume(id, secret);
    return c.json({ resumed: true });
  });

  app.post("/v1/migrations/:id/abort", limit, async (c) => {
    const id = migrationId(c.req.param("id"));
    const { secret } = await readJsonBody(c.req.raw, SecretBody, MAX_BODY);
    await migrations.destination.abort(id, secret);
    return c.json({ aborted: true });
  });

  /** The outcome, and which pod goes where: what a destination asks before it restores (is the request really from us?) and while it holds a copy. */
  app.get("/v1/migrations/:id", (c) => c.json(migrations.claim(migrationId(c.req.param("id")))));
}
