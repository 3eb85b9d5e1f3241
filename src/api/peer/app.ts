/**
 * The peer API: what cluster members serve each other over mutual TLS. The
 * TLS layer (src/agent/peer-listener.ts) refuses any client without a
 * certificate of this cluster's CA, or with a revoked or expired one, before
 * a request reaches this app; the app then validates every input, bounds every
 * body, and times every request out.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { timeout } from "hono/timeout";
import type { Cluster } from "../../cluster/cluster.ts";
import { AutopodError, errorMessage, httpStatusOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { addPeerEvacuationRoutes, type PeerEvacuationDeps } from "./evacuation-routes.ts";
import { addPeerImageRoutes, type PeerImageDeps } from "./image-routes.ts";
import { addPeerMigrationRoutes, type PeerMigrationDeps } from "./migration-routes.ts";
import { MAX_CRL_BYTES, type PeerInfo, type PeerPods } from "./schemas.ts";

export const PEER_REQUEST_TIMEOUT_MS = 30_000;

export interface PeerAppDeps {
  cluster: Cluster;
  images?: PeerImageDeps;
  migrations?: PeerMigrationDeps;
  evacuations?: PeerEvacuationDeps;
  info(): Promise<PeerInfo>;
  /** This host's pods and their addresses: cheap, asked before every allocation in a routed pod network. */
  pods(): PeerPods;
  log: Logger;
}

export function createPeerApp(deps: PeerAppDeps): Hono {
  const app = new Hono();
  app.onError((err, c) => {
    const status = httpStatusOf(err);
    const code = err instanceof AutopodError ? err.code : "internal";
    if (status >= 500) deps.log.error("peer request failed", { method: c.req.method, path: c.req.path, error: errorMessage(err) });
    // A refused import is answered while the pusher is still sending: Bun then closes the connection, and the pusher
    // sees only ECONNRESET. The reason is kept here.
    else if (c.req.path === "/v1/images/import") deps.log.warn("peer import refused", { error: errorMessage(err) });
    return c.json({ error: { code, message: errorMessage(err) } }, status as 500);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: `No such endpoint: ${c.req.method} ${c.req.path}` } }, 404));
  // Image streams take as long as the link needs; every other request is short.
  app.use("/v1/health", timeout(PEER_REQUEST_TIMEOUT_MS));
  app.use("/v1/info", timeout(PEER_REQUEST_TIMEOUT_MS));
  app.use("/v1/pods", timeout(PEER_REQUEST_TIMEOUT_MS));
  app.use("/v1/cluster/*", timeout(PEER_REQUEST_TIMEOUT_MS));
  app.use("/v1/chunks/*", timeout(PEER_REQUEST_TIMEOUT_MS * 4));
  app.use("/v1/images/held", timeout(PEER_REQUEST_TIMEOUT_MS));
  if (deps.images) addPeerImageRoutes(app, deps.images);
  if (deps.migrations) addPeerMigrationRoutes(app, deps.migrations);
  if (deps.evacuations) addPeerEvacuationRoutes(app, deps.evacuations);

  /** Says only that the agent answers. */
  app.get("/v1/health", (c) => c.json({ ok: true }));

  app.get("/v1/info", async (c) => c.json(await deps.info()));

  app.get("/v1/pods", (c) => c.json(deps.pods()));

  app.get("/v1/cluster/crl", (c) => {
    const id = deps.cluster.identity;
    return c.body(id?.crlPem ?? "", 200, { "content-type": "application/x-pem-file" });
  });

  /** A newer revocation list from a member; kept only if the CA signed it. */
  app.post(
    "/v1/cluster/crl",
    bodyLimit({ maxSize: MAX_CRL_BYTES, onError: (c) => c.json({ error: { code: "invalid_argument", message: "The request body is too large" } }, 413) }),
    async (c) => {
      const adopted = await deps.cluster.adoptCrl(await c.req.text());
      return c.json({ adopted });
    },
  );
  return app;
}
