/**
 * The peer API's TCP listener: mutual TLS with the cluster's CA and
 * revocation list, so a client without a certificate of this cluster, or with
 * an expired or revoked one, fails the handshake and never reaches a handler.
 * It listens only once the host is in a cluster, and starts again (with the
 * new list) whenever the cluster's trust changes.
 */
import type { Hono } from "hono";
import type { Cluster } from "../cluster/cluster.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";

/**
 * Bun's own cap on a request body: none in effect. Image imports stream in
 * (bounded by the import itself: a bounded manifest, and only chunks it names,
 * at the lengths it says); every other route has its own bodyLimit.
 */
const MAX_PEER_BODY_BYTES = Number.MAX_SAFE_INTEGER;

/** Seconds a peer connection may stay silent before Bun closes it (Bun allows at most 255). */
export const PEER_IDLE_TIMEOUT_SECONDS = 240;

export class PeerListener {
  #server: ReturnType<typeof Bun.serve> | null = null;
  #restarting: Promise<void> = Promise.resolve();

  constructor(
    readonly cluster: Cluster,
    readonly app: Hono,
    readonly listen: string,
    readonly log: Logger,
  ) {
    cluster.onChange(() => {
      this.#restarting = this.#restarting.then(() => this.restart());
    });
  }

  get port(): number | null {
    return this.#server?.port ?? null;
  }

  start(): void {
    const id = this.cluster.identity;
    if (!id || this.#server) return;
    const [hostname, port] = splitHostPort(this.listen);
    try {
      this.#server = Bun.serve({
        hostname,
        port,
        fetch: this.app.fetch,
        maxRequestBodySize: MAX_PEER_BODY_BYTES,
        // Bun closes a connection idle for 10 s by default: a receiver verifying and committing a
        // large image after its last byte (or a busy host) sends nothing for longer, and the pusher
        // saw ECONNRESET. Each route has its own deadline; this only ends connections gone silent.
        idleTimeout: PEER_IDLE_TIMEOUT_SECONDS,
        tls: { key: id.keyPem, cert: id.certPem, ca: id.caCertPem, crl: id.crlPem, requestCert: true, rejectUnauthorized: true },
      } as unknown as Parameters<typeof Bun.serve>[0]);
      this.log.info("peer API listening", { listen: this.listen, cluster: id.cluster, host: id.host, revoked: id.revoked.size });
    } catch (e) {
      this.log.error("peer API cannot listen", { listen: this.listen, error: errorMessage(e) });
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    this.start();
  }

  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (s) await s.stop(true);
  }
}

function splitHostPort(hp: string): [string, number] {
  const i = hp.lastIndexOf(":");
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}
