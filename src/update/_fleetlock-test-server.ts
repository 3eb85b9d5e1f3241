/**
 * A FleetLock TEST SERVER, for tests only: a small in-memory server that
 * follows Zincati's FleetLock protocol document (docs/development/fleetlock/
 * protocol.md) to the letter, to exercise the client against. A counting
 * semaphore per group with owned, recursive locks: pre-reboot takes a slot
 * (or answers 200 when the id holds one already), steady-state releases the
 * id's slot (200 also when it held none). Requests must be POST with
 * `fleet-lock-protocol: true` and a body {"client_params":{"id","group"}},
 * id non-empty, group matching ^[a-zA-Z0-9.-]+$. Errors are 4xx/5xx with
 * {"kind","value"}, kinds of a small fixed set.
 */
export class FleetLockTestServer {
  readonly #server: ReturnType<typeof Bun.serve>;
  readonly #holders = new Map<string, Set<string>>();
  /** Every request seen, for assertions. */
  readonly requests: { path: string; id: string; group: string; status: number }[] = [];

  constructor(readonly slots = 1) {
    this.#server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => this.#handle(req) });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.port}`;
  }

  holders(group = "default"): string[] {
    return [...(this.#holders.get(group) ?? [])];
  }

  stop(): void {
    this.#server.stop(true);
  }

  async #handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    const error = (status: number, kind: string, value: string) => {
      this.requests.push({ path, id: "", group: "", status });
      return Response.json({ kind, value }, { status });
    };
    if (path !== "/v1/pre-reboot" && path !== "/v1/steady-state") return error(404, "not_found", `no endpoint ${path}`);
    if (req.method !== "POST") return error(405, "method_not_allowed", "only POST is allowed");
    if (req.headers.get("fleet-lock-protocol") !== "true") return error(400, "missing_header", "the fleet-lock-protocol header must be true");
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return error(400, "invalid_body", "the body is not JSON");
    }
    const params = (body as { client_params?: { id?: unknown; group?: unknown } } | null)?.client_params;
    const id = params?.id;
    const group = params?.group;
    if (typeof id !== "string" || id === "") return error(400, "invalid_client_id", "client_params.id must be a non-empty string");
    if (typeof group !== "string" || !/^[a-zA-Z0-9.-]+$/.test(group))
      return error(400, "invalid_client_group", "client_params.group must match ^[a-zA-Z0-9.-]+$");
    const held = this.#holders.get(group) ?? new Set<string>();
    this.#holders.set(group, held);
    if (path === "/v1/pre-reboot") {
      if (!held.has(id) && held.size >= this.slots) {
        this.requests.push({ path, id, group, status: 409 });
        return Response.json({ kind: "failed_lock_semaphore_full", value: "semaphore currently full, all slots are locked already" }, { status: 409 });
      }
      held.add(id);
    } else {
      held.delete(id);
    }
    this.requests.push({ path, id, group, status: 200 });
    return new Response(null, { status: 200 });
  }
}
