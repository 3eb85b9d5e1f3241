/**
 * Peer routes of evacuation (src/evacuate/): what a host evacuating its pods
 * asks of a peer. GET /v1/maintenance says whether this host may take pods
 * (its patch verdict, and whether it is evacuating, away or updating itself).
 * POST /v1/evacuations/return asks this host to migrate a pod back to the
 * host it came from: only a peer may ask, only for a pod that arrived here
 * from that very host (recorded at arrival), and the pod goes only there, so
 * a member cannot pull another host's pods to itself.
 */
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { timeout } from "hono/timeout";
import { z } from "zod";
import { ConflictError, InvalidArgumentError, NotFoundError, PreconditionError } from "../../errors.ts";
import { forgetArrival, readArrivals } from "../../evacuate/arrivals.ts";
import type { Evacuations } from "../../evacuate/evacuations.ts";
import type { Migrations } from "../../migrate/index.ts";
import type { PodView } from "../../pods/pod.ts";
import { checkPodName } from "../../pods/validate.ts";
import { readJsonBody } from "../local/bounded-body.ts";
import { MIGRATION_RESTORE_TIMEOUT_MS } from "./migration-routes.ts";

const MAX_BODY = 1024;
/** A return is a whole live migration: as long as a held restore may take, and its rounds before it. */
export const RETURN_TIMEOUT_MS = 2 * MIGRATION_RESTORE_TIMEOUT_MS;

const ReturnBody = z.object({ origin: z.string().min(1).max(63), pod: z.string().max(63) }).strict();

export interface PeerEvacuationDeps {
  evacuations: Evacuations;
  migrations: Migrations;
  stateDir: string;
  pod(name: string): PodView | null;
  isPeer(name: string): boolean;
}

export function addPeerEvacuationRoutes(app: Hono, d: PeerEvacuationDeps): void {
  app.use("/v1/maintenance", timeout(30_000));
  app.use("/v1/evacuations/return", timeout(RETURN_TIMEOUT_MS));

  app.get("/v1/maintenance", (c) => c.json(d.evacuations.maintenance()));

  app.post(
    "/v1/evacuations/return",
    bodyLimit({ maxSize: MAX_BODY, onError: (c) => c.json({ error: { code: "invalid_argument", message: "The request body is too large" } }, 413) }),
    async (c) => {
      // The migration answers only when it is done: no idle limit for this request (the route's timeout stays).
      (c.env as { timeout?: (req: Request, seconds: number) => void } | undefined)?.timeout?.(c.req.raw, 0);
      const b = await readJsonBody(c.req.raw, ReturnBody, MAX_BODY);
      checkPodName(b.pod);
      if (!d.isPeer(b.origin)) throw new InvalidArgumentError(`"${b.origin}" is not a peer of this host: a pod goes back only to a peer`);
      const arrival = readArrivals(d.stateDir)[b.pod];
      if (!arrival) throw new NotFoundError(`Pod "${b.pod}" did not come to this host by migration: it is not "${b.origin}"'s to take back`);
      if (arrival.from !== b.origin)
        throw new PreconditionError(`Pod "${b.pod}" came to this host from "${arrival.from}", not from "${b.origin}": only its origin may take it back`);
      const view = d.pod(b.pod);
      if (!view) {
        forgetArrival(d.stateDir, b.pod);
        throw new NotFoundError(`Pod "${b.pod}" is no longer on this host`);
      }
      if (view.state !== "running") throw new ConflictError(`Cannot send pod "${b.pod}" back: it is ${view.state} here, not running`);
      const r = await d.migrations.migrate(b.pod, { to: b.origin, mode: "auto", maxRounds: 8 });
      forgetArrival(d.stateDir, b.pod);
      return c.json({ returned: { pod: b.pod, freezeMs: r.freezeMs, bytesSent: r.bytesSent, totalMs: r.totalMs } });
    },
  );
}
