/**
 * etcd's v3 JSON gateway over plain fetch (no client library): POST JSON to
 * /v3/..., keys and values base64, 64-bit numbers as strings. Each call tries
 * the endpoints in turn from the last one that answered, so one member down
 * costs a timeout once, not every call.
 */
import { LockServiceError } from "./lock.ts";

export interface EtcdKv {
  key: string;
  value: string;
  create_revision: string;
  lease?: string;
}

/** An error etcd answered with (as opposed to no answer at all). */
export class EtcdAnswerError extends LockServiceError {
  override name = "EtcdAnswerError";
  constructor(
    message: string,
    readonly grpcCode: number,
  ) {
    super(message);
  }
}

/** gRPC codes that mean "ask another member": unavailable, deadline exceeded, aborted. */
const RETRY_ELSEWHERE = new Set([4, 10, 14]);

export class EtcdGateway {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  #current = 0;

  constructor(endpoints: string[], timeoutMs = 3000) {
    if (endpoints.length === 0) throw new LockServiceError("The etcd lock needs at least one endpoint");
    this.#endpoints = endpoints.map((e) => e.replace(/\/+$/, ""));
    this.#timeoutMs = timeoutMs;
  }

  async call<T>(path: string, body: unknown): Promise<T> {
    const failures: string[] = [];
    for (let i = 0; i < this.#endpoints.length; i++) {
      const n = (this.#current + i) % this.#endpoints.length;
      const url = this.#endpoints[n] + path;
      let res: Response;
      try {
        res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      } catch (e) {
        failures.push(`${this.#endpoints[n]}: ${(e as Error).message}`);
        continue;
      }
      const text = await res.text();
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        failures.push(`${this.#endpoints[n]}: HTTP ${res.status}, not JSON`);
        continue;
      }
      if (res.ok && json.error === undefined) {
        this.#current = n;
        return json as T;
      }
      const err = (json.error ?? {}) as Record<string, unknown>;
      const code = Number(json.code ?? err.grpc_code ?? 2);
      const message = String(json.message ?? json.error ?? err.message ?? `HTTP ${res.status}`);
      if (RETRY_ELSEWHERE.has(code) || res.status >= 502) {
        failures.push(`${this.#endpoints[n]}: ${message}`);
        continue;
      }
      this.#current = n;
      throw new EtcdAnswerError(`etcd refused ${path}: ${message}`, code);
    }
    throw new LockServiceError(`No etcd endpoint answered ${path}: ${failures.join("; ")}`);
  }
}

export const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
export const unb64 = (s: string): string => Buffer.from(s, "base64").toString("utf8");

/** The range_end that makes a range of every key starting with `prefix`. */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, "utf8");
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]!++;
      return end.toString("base64");
    }
  }
  return Buffer.from([0]).toString("base64");
}
