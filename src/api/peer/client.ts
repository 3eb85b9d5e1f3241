/**
 * A client of one peer's API over mutual TLS: it presents this host's
 * certificate, trusts only the cluster's CA, and refuses a peer whose
 * certificate is revoked or names another host than the one asked for.
 */
import type { Cluster } from "../../cluster/cluster.ts";
import { normalSerial } from "../../cluster/x509.ts";
import { errorFromWire, NotFoundError, PreconditionError, UnavailableError } from "../../errors.ts";
import type { MaintenanceAnswer, ReturnedPod } from "../../evacuate/evacuations.ts";
import { RETURN_TIMEOUT_MS } from "./evacuation-routes.ts";
import type { ImportResult } from "../../checkpoint/import.ts";
import { LIMITS } from "../../image/manifest.ts";
import { HASH_BYTES, sha256, toHex } from "../../image/hash.ts";
import type { HeldRestore, MigrationClaim, MigrationOutcome, MigrationRestoreRequest, MigrationStageRequest, StageState } from "../../migrate/peer.ts";
import { MIGRATION_RESTORE_TIMEOUT_MS } from "./migration-routes.ts";
import type { PageBridge } from "../../migrate/page-link.ts";
import type { PageLinkExpect } from "../../migrate/peer.ts";
import { connectPageLink } from "./page-link-tls.ts";
import { z } from "zod";
import { HeldImagesAnswerSchema, MAX_CRL_BYTES, type PeerInfo, PeerInfoSchema, type PeerPods, PeerPodsSchema } from "./schemas.ts";

export const PEER_CLIENT_TIMEOUT_MS = 10_000;
/**
 * A push whose connection takes no bytes for this long is given up (a cut link: TCP alone would
 * retry for about 15 minutes, and a migration's final delta holds its pod frozen meanwhile). A
 * batch is a few MiB, which even a 10 Mbit/s link takes in seconds.
 */
export const PUSH_STALL_MS = 30_000;
/** After its last byte, how long a push waits for the receiver's answer (it verifies and commits the last batch). */
export const PUSH_ANSWER_MS = 120_000;

const MigrationClaimSchema = z.object({
  outcome: z.enum(["committed", "aborted", "pending"]),
  pod: z.string().max(63).nullable(),
  to: z.string().max(63).nullable(),
});

const MaintenanceSchema = z
  .object({ host: z.string().max(63), verdict: z.string().max(64).nullable(), maintenance: z.enum(["evacuating", "away", "updating"]).nullable() })
  .strict();
const ReturnedSchema = z.object({ pod: z.string().max(63), freezeMs: z.number(), bytesSent: z.number(), totalMs: z.number() }).strict();

const HeldRestoreSchema = z.object({ criuMs: z.number(), phases: z.record(z.string().max(64), z.number()) }).strict();

export class PeerClient {
  constructor(
    readonly cluster: Cluster,
    readonly name: string,
    readonly url: string,
  ) {}

  async health(): Promise<boolean> {
    const res = await this.#fetch("GET", "/v1/health");
    return ((await res.json()) as { ok?: boolean }).ok === true;
  }

  async info(): Promise<PeerInfo> {
    const res = await this.#fetch("GET", "/v1/info");
    const parsed = PeerInfoSchema.safeParse(await res.json());
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered info that does not match the schema`);
    return parsed.data;
  }

  async pods(): Promise<PeerPods> {
    const res = await this.#fetch("GET", "/v1/pods");
    const parsed = PeerPodsSchema.safeParse(await res.json());
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered a pod list that does not match the schema`);
    return parsed.data;
  }

  async revocationList(): Promise<string> {
    const res = await this.#fetch("GET", "/v1/cluster/crl");
    const text = await res.text();
    if (text.length > MAX_CRL_BYTES) throw new UnavailableError(`Peer "${this.name}" sent a revocation list over ${MAX_CRL_BYTES} bytes`);
    return text;
  }

  async sendRevocationList(pem: string): Promise<boolean> {
    const res = await this.#fetch("POST", "/v1/cluster/crl", pem);
    return ((await res.json()) as { adopted?: boolean }).adopted === true;
  }

  /** Which of these hashes (concatenated) the peer lacks: a bitmap, bit set = lacking. */
  async missing(hashes: Uint8Array): Promise<Uint8Array> {
    const res = await this.#fetch("POST", "/v1/chunks/missing", hashes, { contentType: "application/octet-stream", timeoutMs: 120_000 });
    const bitmap = new Uint8Array(await res.arrayBuffer());
    if (bitmap.byteLength !== Math.ceil(hashes.byteLength / HASH_BYTES / 8))
      throw new UnavailableError(`Peer "${this.name}" answered a bitmap of the wrong size`);
    return bitmap;
  }

  /** Which of these images (at most MAX_HELD_QUESTION) the peer holds. */
  async heldImages(ids: string[]): Promise<string[]> {
    const res = await this.#fetch("POST", "/v1/images/held", JSON.stringify({ ids }), { contentType: "application/json" });
    const parsed = HeldImagesAnswerSchema.safeParse(await res.json());
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered a held-images list that does not match the schema`);
    const asked = new Set(ids);
    return parsed.data.held.filter((id) => asked.has(id));
  }

  /** Send an export stream; the peer imports it (verifying every chunk) and says what it made of it. */
  async importImage(stream: ReadableStream<Uint8Array>): Promise<ImportResult> {
    const stall = new StallWatch(PUSH_STALL_MS);
    const watched = stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          stall.touch(PUSH_STALL_MS);
          c.enqueue(chunk);
        },
        flush() {
          stall.touch(PUSH_ANSWER_MS);
        },
      }),
    );
    try {
      const res = await this.#fetch("POST", "/v1/images/import", watched, {
        contentType: "application/x-autopod-image",
        timeoutMs: null,
        signal: stall.signal,
      });
      return ((await res.json()) as { import: ImportResult }).import;
    } catch (e) {
      if (stall.signal.aborted) {
        throw new UnavailableError(`Peer "${this.name}" at ${this.url} took no data for ${stall.ms / 1000} s: the link is down or the peer stalled`, {
          cause: e,
        });
      }
      throw e;
    } finally {
      stall.stop();
    }
  }

  /** The manifest of the peer's image `id` (its exact bytes; the id is their hash, checked here). */
  async manifest(id: string): Promise<Uint8Array> {
    const res = await this.#fetch("GET", `/v1/images/${encodeURIComponent(id)}/manifest`);
    const len = Number(res.headers.get("content-length") ?? "0");
    if (len > LIMITS.manifestBytes) throw new UnavailableError(`Peer "${this.name}" sent a manifest over ${LIMITS.manifestBytes} bytes`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength > LIMITS.manifestBytes) throw new UnavailableError(`Peer "${this.name}" sent a manifest over ${LIMITS.manifestBytes} bytes`);
    if (toHex(sha256(bytes)) !== id) throw new UnavailableError(`Peer "${this.name}" sent a manifest that is not image ${id}`);
    return bytes;
  }

  /** An export of the peer's image `id` carrying only the chunks marked in `wanted`. */
  async exportImage(id: string, wanted: Uint8Array): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#fetch("POST", `/v1/images/${encodeURIComponent(id)}/export`, wanted, { contentType: "application/octet-stream", timeoutMs: null });
    if (!res.body) throw new UnavailableError(`Peer "${this.name}" sent no export`);
    return res.body;
  }

  /** Restore `image` as `pod` with its tasks held stopped; resolves once the copy is ready (src/migrate/). */
  async migrationRestore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore> {
    const res = await this.#fetch("POST", `/v1/migrations/${encodeURIComponent(id)}/restore`, JSON.stringify(req), {
      contentType: "application/json",
      timeoutMs: MIGRATION_RESTORE_TIMEOUT_MS,
    });
    const parsed = HeldRestoreSchema.safeParse(((await res.json()) as { ready?: unknown }).ready);
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered a restore that does not match the schema`);
    return parsed.data;
  }

  async migrationStage(id: string, req: MigrationStageRequest): Promise<void> {
    await this.#fetch("POST", `/v1/migrations/${encodeURIComponent(id)}/stage`, JSON.stringify(req), { contentType: "application/json" });
  }

  async migrationStaged(id: string): Promise<StageState> {
    const res = await this.#fetch("GET", `/v1/migrations/${encodeURIComponent(id)}/stage`);
    const state = ((await res.json()) as { state?: unknown }).state;
    if (state !== "made" && state !== "failed" && state !== "pending" && state !== "none") {
      throw new UnavailableError(`Peer "${this.name}" answered an unknown stage state`);
    }
    return state;
  }

  async migrationResume(id: string, secret: string): Promise<void> {
    await this.#fetch("POST", `/v1/migrations/${encodeURIComponent(id)}/resume`, JSON.stringify({ secret }), { contentType: "application/json" });
  }

  async migrationAbort(id: string, secret: string): Promise<void> {
    await this.#fetch("POST", `/v1/migrations/${encodeURIComponent(id)}/abort`, JSON.stringify({ secret }), { contentType: "application/json" });
  }

  async migrationClaim(id: string): Promise<MigrationClaim> {
    const res = await this.#fetch("GET", `/v1/migrations/${encodeURIComponent(id)}`);
    const parsed = MigrationClaimSchema.safeParse(await res.json());
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered a migration claim that does not match the schema`);
    return parsed.data;
  }

  /** The peer's patch verdict and maintenance state (src/evacuate/); null from an agent without the route. */
  async maintenance(): Promise<MaintenanceAnswer | null> {
    let res: Response;
    try {
      res = await this.#fetch("GET", "/v1/maintenance");
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
    const parsed = MaintenanceSchema.safeParse(await res.json());
    if (!parsed.success) throw new UnavailableError(`Peer "${this.name}" answered a maintenance state that does not match the schema`);
    return parsed.data;
  }

  /** Ask the peer to migrate `pod` back to `origin` (this host); resolves when it runs here again. */
  async returnPod(origin: string, pod: string): Promise<ReturnedPod> {
    const res = await this.#fetch("POST", "/v1/evacuations/return", JSON.stringify({ origin, pod }), {
      contentType: "application/json",
      timeoutMs: RETURN_TIMEOUT_MS,
    });
    const parsed = ReturnedSchema.safeParse(((await res.json()) as { returned?: unknown }).returned);
    if (!parsed.success || parsed.data.pod !== pod) throw new UnavailableError(`Peer "${this.name}" answered a return that does not match the schema`);
    return parsed.data;
  }

  async migrationOutcome(id: string): Promise<MigrationOutcome> {
    const res = await this.#fetch("GET", `/v1/migrations/${encodeURIComponent(id)}`);
    const o = ((await res.json()) as { outcome?: unknown }).outcome;
    if (o !== "committed" && o !== "aborted" && o !== "pending") throw new UnavailableError(`Peer "${this.name}" answered an unknown migration outcome`);
    return o;
  }

  async pageLink(port: number, expect: PageLinkExpect, bridge: PageBridge): Promise<void> {
    const id = this.cluster.identity;
    if (!id) throw new PreconditionError("This host is not in a cluster");
    const host = new URL(this.url).hostname.replace(/^\[(.*)\]$/, "$1");
    await connectPageLink(id, (serial) => this.cluster.isRevoked(serial), host, port, expect, bridge);
  }

  async #fetch(
    method: string,
    path: string,
    body?: string | Uint8Array | ReadableStream<Uint8Array>,
    opts: { contentType?: string; timeoutMs?: number | null; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const id = this.cluster.identity;
    if (!id) throw new PreconditionError("This host is not in a cluster");
    const cluster = this.cluster;
    const expected = this.name;
    let refusal: string | null = null;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.url), {
        method,
        body,
        headers: body === undefined ? {} : { "content-type": opts.contentType ?? "application/x-pem-file" },
        ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
        // Streams take as long as the link needs; everything else answers quickly or not at all.
        signal: opts.signal ?? (opts.timeoutMs === null ? undefined : AbortSignal.timeout(opts.timeoutMs ?? PEER_CLIENT_TIMEOUT_MS)),
        // A connection of its own: a pooled one may predate a revocation.
        keepalive: false,
        tls: {
          key: id.keyPem,
          cert: id.certPem,
          ca: id.caCertPem,
          checkServerIdentity(_host: string, cert: { serialNumber?: string; subject?: { CN?: string } }) {
            const serial = normalSerial(cert.serialNumber ?? "");
            if (cluster.isRevoked(serial)) refusal = `its certificate (serial ${serial}) is revoked`;
            else if (cert.subject?.CN !== expected) refusal = `its certificate is for "${cert.subject?.CN}", not "${expected}"`;
            return refusal ? new Error(refusal) : undefined;
          },
        },
      } as RequestInit);
    } catch (e) {
      const why = refusal ?? (e as Error).message;
      throw new UnavailableError(`Peer "${this.name}" at ${this.url} refused or unreachable: ${why}`, { cause: e });
    }
    if (res.ok) return res;
    let code = "internal";
    let message = `Peer "${this.name}" answered ${res.status} ${res.statusText}`;
    try {
      const j = (await res.json()) as { error?: { code?: string; message?: string } };
      if (j.error?.code) code = j.error.code;
      if (j.error?.message) message = `Peer "${this.name}": ${j.error.message}`;
    } catch {
      // not our error format
    }
    throw errorFromWire(code, message);
  }
}

/** Aborts its signal when not touched for the time the last touch allowed. */
class StallWatch {
  readonly #ac = new AbortController();
  #timer: ReturnType<typeof setTimeout> | null = null;
  ms: number;

  constructor(ms: number) {
    this.ms = ms;
    this.touch(ms);
  }

  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  touch(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.ms = ms;
    this.#timer = setTimeout(() => this.#ac.abort(), ms);
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
