/**
 * LocalClient: the one typed client of the local API. Every CLI command talks
 * to the agent through it; errors come back as the domain errors the agent
 * raised (errorFromWire), and a missing agent is an UnavailableError that
 * says where we looked and how to start one.
 */
import type { ClusterView } from "../../cluster/cluster.ts";
import type { PeerStatus } from "../peer/peer-directory.ts";
import type { TransferReport } from "../../transfer/push.ts";
import { errorFromWire, UnavailableError } from "../../errors.ts";
import type { CheckpointResult, RestoreResult } from "../../checkpoint/checkpointer.ts";
import type { ImportResult } from "../../checkpoint/import.ts";
import type { PodView } from "../../pods/pod.ts";
import type { GcResult } from "../../store/chunk-store.ts";
import type { ImageOrigin } from "../../trust/image-trust.ts";
import { EXPORT_BYTES_HEADER } from "./export-header.ts";
import type { ImageListing } from "./image-routes.ts";
import type { StatusSnapshot } from "../../status/service.ts";
import type { UpdateEvent } from "../../update/events.ts";
import type { UpdateView } from "../../update/service.ts";
import type { CreatePodRequest } from "../../pods/validate.ts";
import type { ClusterCpuView } from "../../cluster/cluster-cpu.ts";
import type { AgentInfo } from "./app.ts";
import type { MigrateReport, MigrationProgress } from "../../migrate/index.ts";
import type { EvacuateEvent, EvacuateRequest, EvacuationReport, ReturnReport } from "../../evacuate/index.ts";
import { decodeFrames, EXEC_CONTENT_TYPE, encodeFrame, exitCodeOf, FRAME, resizeFrame } from "./exec-frames.ts";
import type { OnProgress } from "../../progress.ts";
import { readProgressStream } from "./progress-stream.ts";

export interface ExecOutput {
  stdout(chunk: Uint8Array): void;
  stderr(chunk: Uint8Array): void;
}

/** What an interactive exec sends besides the command. */
export interface ExecInput {
  /** The caller's input for the command's stdin (its terminal with tty); its end is the end of input. */
  stdin?: AsyncIterable<Uint8Array>;
  /** A terminal of this size for the command, from the pod's own devpts. */
  tty?: { rows: number; cols: number };
  /** Subscribe to the caller's terminal size changes; returns the unsubscribe. */
  onResize?: (listener: (size: { rows: number; cols: number }) => void) => () => void;
}

export class LocalClient {
  constructor(readonly socket: string) {}

  health(): Promise<AgentInfo & { ok: boolean }> {
    return this.#json("GET", "/v1/health");
  }

  async listPods(): Promise<PodView[]> {
    return (await this.#json<{ pods: PodView[] }>("GET", "/v1/pods")).pods;
  }

  async getPod(name: string): Promise<PodView> {
    return (await this.#json<{ pod: PodView }>("GET", `/v1/pods/${encodeURIComponent(name)}`)).pod;
  }

  async createPod(req: CreatePodRequest): Promise<PodView> {
    return (await this.#json<{ pod: PodView }>("POST", "/v1/pods", req)).pod;
  }

  async stopPod(name: string, timeoutSeconds: number): Promise<PodView> {
    return (await this.#json<{ pod: PodView }>("POST", `/v1/pods/${encodeURIComponent(name)}/stop`, { timeoutSeconds })).pod;
  }

  async removePod(name: string, force: boolean): Promise<void> {
    await this.#json("DELETE", `/v1/pods/${encodeURIComponent(name)}?force=${force}`);
  }

  /**
   * The pod's log, chunk by chunk. With follow it goes on until the pod has
   * ended, reconnecting (from where it was) when the agent drops an idle connection.
   */
  async *logs(name: string, follow: boolean): AsyncGenerator<Uint8Array> {
    let offset = 0;
    for (;;) {
      const res = await this.#fetch("GET", `/v1/pods/${encodeURIComponent(name)}/logs?follow=${follow}&offset=${offset}`);
      if (!res.body) return;
      try {
        for await (const chunk of res.body) {
          offset += chunk.length;
          yield chunk;
        }
        return;
      } catch (e) {
        if (!follow) throw new UnavailableError(`The agent dropped the log stream: ${(e as Error).message}`, { cause: e });
      }
    }
  }

  /**
   * Run a command in the pod; output goes to `out` as it comes. With `input`,
   * the caller's stdin, terminal and resizes go to it on the same request.
   * Resolves with its exit status.
   */
  async exec(name: string, cmd: string[], out: ExecOutput, input?: ExecInput): Promise<number> {
    const path = `/v1/pods/${encodeURIComponent(name)}/exec`;
    if (!input) return this.#execFrames(await this.#fetch("POST", path, { cmd }), out);
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        const send = (frame: Uint8Array) => {
          try {
            ctrl.enqueue(frame);
          } catch {
            // the session is over
          }
        };
        send(encodeFrame(FRAME.start, new TextEncoder().encode(JSON.stringify({ cmd, stdin: input.stdin !== undefined, tty: input.tty ?? null }))));
        const unsubscribe = input.onResize?.((s) => send(resizeFrame(s.rows, s.cols))) ?? (() => {});
        let isStopped = false;
        stop = () => {
          if (isStopped) return;
          isStopped = true;
          unsubscribe();
          try {
            ctrl.close();
          } catch {
            // closed already
          }
        };
        if (input.stdin) {
          void (async () => {
            try {
              for await (const chunk of input.stdin!) {
                if (isStopped) return;
                // The agent takes frames of up to 1 MiB.
                for (let at = 0; at < chunk.byteLength; at += 1 << 16) send(encodeFrame(FRAME.stdin, chunk.subarray(at, at + (1 << 16))));
              }
            } catch {
              // an unreadable stdin ends like an empty one
            }
            send(encodeFrame(FRAME.stdinEnd, new Uint8Array(0)));
          })();
        }
      },
      cancel: () => stop(),
    });
    try {
      return await this.#execFrames(await this.#fetch("POST", path, body, EXEC_CONTENT_TYPE), out);
    } finally {
      stop();
    }
  }

  async #execFrames(res: Response, out: ExecOutput): Promise<number> {
    if (!res.body) throw new UnavailableError("The agent sent no exec output");
    for await (const f of decodeFrames(res.body)) {
      if (f.type === FRAME.stdout) out.stdout(f.payload);
      else if (f.type === FRAME.stderr) out.stderr(f.payload);
      else if (f.type === FRAME.exit) return exitCodeOf(f);
      else if (f.type === FRAME.error) {
        const e = JSON.parse(new TextDecoder().decode(f.payload)) as { code: string; message: string };
        throw errorFromWire(e.code, e.message);
      }
    }
    throw new UnavailableError("The exec stream ended without an exit status (did the agent stop?)");
  }

  // ---- Checkpoints and images ----------------------------------------------------------

  /** Checkpoint a pod; with `onProgress`, the agent streams how far it got as it goes. */
  async checkpoint(
    name: string,
    req: { leaveRunning: boolean; excludeVolumes: string[]; killExec?: boolean },
    onProgress?: OnProgress,
  ): Promise<CheckpointResult> {
    const path = `/v1/pods/${encodeURIComponent(name)}/checkpoint`;
    if (onProgress) return readProgressStream<CheckpointResult>(await this.#body("POST", `${path}?progress=true`, req), onProgress);
    return (await this.#json<{ checkpoint: CheckpointResult }>("POST", path, req)).checkpoint;
  }

  /** Restore `image` (an id or prefix), or `ref` (that, or a pod name: its latest image). */
  async restore(req: ({ image: string } | { ref: string }) & { name?: string; ip?: string }): Promise<RestoreResult> {
    return (await this.#json<{ restore: RestoreResult }>("POST", "/v1/restore", req)).restore;
  }

  async images(): Promise<ImageListing[]> {
    return (await this.#json<{ images: ImageListing[] }>("GET", "/v1/images")).images;
  }

  async removeImage(id: string): Promise<string> {
    return (await this.#json<{ removed: string }>("DELETE", `/v1/images/${encodeURIComponent(id)}`)).removed;
  }

  async gcImages(onProgress?: OnProgress): Promise<GcResult> {
    if (onProgress) return readProgressStream<GcResult>(await this.#body("POST", "/v1/images/gc?progress=true", {}), onProgress);
    return (await this.#json<{ gc: GcResult }>("POST", "/v1/images/gc", {})).gc;
  }

  /** The image as one export file, streamed. */
  async exportImage(id: string): Promise<ReadableStream<Uint8Array>> {
    return (await this.exportImageSized(id)).stream;
  }

  /** The image as one export file, streamed, with the file's size when the agent says it. */
  async exportImageSized(id: string): Promise<{ stream: ReadableStream<Uint8Array>; totalBytes: number | null }> {
    const res = await this.#fetch("GET", `/v1/images/${encodeURIComponent(id)}/export`);
    if (!res.body) throw new UnavailableError("The agent sent no export");
    const size = Number(res.headers.get(EXPORT_BYTES_HEADER) ?? Number.NaN);
    return { stream: res.body, totalBytes: Number.isSafeInteger(size) && size >= 0 ? size : null };
  }

  /** Stream an export file into the agent's store; `trust` admits an image this host did not sign (docs/trust.md). */
  async importImage(
    source: ReadableStream<Uint8Array>,
    opts: { trust?: boolean } = {},
  ): Promise<ImportResult & { origin: ImageOrigin; signer: string | null }> {
    const res = await this.#fetch("POST", `/v1/images/import${opts.trust ? "?trust=true" : ""}`, source, "application/x-autopod-image");
    return ((await res.json()) as { import: ImportResult & { origin: ImageOrigin; signer: string | null } }).import;
  }

  // ---- Status ----------------------------------------------------------------------------

  /** The agent's cached status report and its state; with refresh, a fresh report (waits for it). */
  async status(refresh = false): Promise<StatusSnapshot> {
    return (await this.#json<{ status: StatusSnapshot }>("GET", `/v1/status${refresh ? "?refresh=true" : ""}`)).status;
  }

  /** The cached report as Prometheus text, with the status service's own gauges. */
  async statusMetrics(): Promise<string> {
    return (await this.#fetch("GET", "/v1/status/metrics")).text();
  }

  cluster(): Promise<ClusterView & { listening: string | null }> {
    return this.#json("GET", "/v1/cluster");
  }

  clusterInit(req: { cluster: string; host: string; addresses: string[] }): Promise<ClusterView & { listening: string | null }> {
    return this.#json("POST", "/v1/cluster/init", req);
  }

  async clusterAddHost(req: { name: string; addresses: string[] }): Promise<string> {
    return (await this.#json<{ bundle: string }>("POST", "/v1/cluster/hosts", req)).bundle;
  }

  clusterJoin(bundle: string): Promise<ClusterView & { listening: string | null }> {
    return this.#json("POST", "/v1/cluster/join", { bundle });
  }

  clusterRemoveHost(name: string): Promise<{ removed: string; peers: Array<{ peer: string; adopted: boolean; error: string | null }> }> {
    return this.#json("DELETE", `/v1/cluster/hosts/${encodeURIComponent(name)}`);
  }

  /** Send an image to a peer; with `onProgress`, the agent streams how far it got as it goes. */
  async pushImage(id: string, peer: string, onProgress?: OnProgress): Promise<TransferReport> {
    const path = `/v1/images/${encodeURIComponent(id)}/push`;
    if (onProgress) return readProgressStream<TransferReport>(await this.#body("POST", `${path}?progress=true`, { peer }), onProgress);
    return (await this.#json<{ push: TransferReport }>("POST", path, { peer })).push;
  }

  /** Fetch an image from a peer; with `onProgress`, the agent streams how far it got as it goes. */
  async pullImage(image: string, peer: string, onProgress?: OnProgress): Promise<TransferReport> {
    if (onProgress) return readProgressStream<TransferReport>(await this.#body("POST", "/v1/images/pull?progress=true", { image, peer }), onProgress);
    return (await this.#json<{ pull: TransferReport }>("POST", "/v1/images/pull", { image, peer })).pull;
  }

  /** Every peer, asked now, and the cluster's CPU baseline as this host sees it. */
  peers(): Promise<{ peers: PeerStatus[]; cpu: ClusterCpuView }> {
    return this.#json("GET", "/v1/peers");
  }

  addPeer(name: string, url: string): Promise<PeerStatus> {
    return this.#json("POST", "/v1/peers", { name, url });
  }

  async removePeer(name: string): Promise<void> {
    await this.#json("DELETE", `/v1/peers/${encodeURIComponent(name)}`);
  }

  /** The update policy in force and the cycle under way. */
  async update(): Promise<UpdateView> {
    return (await this.#json<{ update: UpdateView }>("GET", "/v1/update")).update;
  }

  /** The update cycle's events after sequence number `since`, oldest first. */
  async events(since = 0, limit = 1000): Promise<UpdateEvent[]> {
    return (await this.#json<{ events: UpdateEvent[] }>("GET", `/v1/events?since=${since}&limit=${limit}`)).events;
  }

  /**
   * The events after `since`, then new ones as they come, for as long as the
   * caller reads. When the agent goes (it restarts, as in the update cycle's
   * "reboot"), waits for it and goes on from the last event seen; only a
   * first connection that fails is an error.
   */
  async *followEvents(since = 0, limit = 1000): AsyncGenerator<UpdateEvent> {
    let last = since;
    let first = true;
    for (;;) {
      let res: Response;
      try {
        res = await this.#fetch("GET", `/v1/events?follow=true&since=${last}&limit=${first ? limit : 1_000_000}`);
      } catch (e) {
        if (first || !(e instanceof UnavailableError)) throw e;
        await Bun.sleep(500);
        continue;
      }
      first = false;
      if (!res.body) return;
      const dec = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of res.body) {
          buf += dec.decode(chunk, { stream: true });
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.trim()) continue;
            const e = JSON.parse(line) as UpdateEvent;
            last = Math.max(last, e.seq);
            yield e;
          }
        }
      } catch {
        // dropped: ask again from the last one seen
      }
      await Bun.sleep(200);
    }
  }

  /** Migrate a pod to a peer; progress lines go to `onProgress` as they come. */
  async migrate(
    name: string,
    req: { to: string; mode?: string; maxRounds?: number; maxDowntimeMs?: number | null },
    onProgress: (p: MigrationProgress) => void = () => {},
  ): Promise<MigrateReport> {
    const res = await this.#fetch("POST", `/v1/pods/${encodeURIComponent(name)}/migrate`, req);
    if (!res.body) throw new UnavailableError("The agent sent no answer to the migration");
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const o = JSON.parse(line) as { progress?: MigrationProgress; migrate?: MigrateReport; error?: { code: string; message: string } };
        if (o.progress) onProgress(o.progress);
        if (o.migrate) return o.migrate;
        if (o.error) throw errorFromWire(o.error.code, o.error.message);
      }
    }
    throw new UnavailableError("The agent's answer to the migration ended early: see its log for the outcome");
  }

  /** Evacuate this host (src/evacuate/); progress lines go to `onEvent` as they come. */
  evacuate(req: EvacuateRequest, onEvent?: (e: EvacuateEvent) => void): Promise<EvacuationReport> {
    return this.#events<EvacuationReport>("/v1/evacuate", req, onEvent);
  }

  /** Bring the evacuated pods home. */
  bringHome(onEvent?: (e: EvacuateEvent) => void): Promise<ReturnReport> {
    return this.#events<ReturnReport>("/v1/evacuate/return", {}, onEvent);
  }

  async #events<T>(path: string, body: unknown, onEvent?: (e: EvacuateEvent) => void): Promise<T> {
    if (!onEvent) return this.#json<T>("POST", path, body);
    const res = await this.#fetch("POST", `${path}?progress=true`, body);
    if (!res.body) throw new UnavailableError("The agent sent an empty answer");
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const o = JSON.parse(line) as { progress?: EvacuateEvent; result?: T; error?: { code: string; message: string } };
        if (o.progress && typeof o.progress.message === "string") onEvent(o.progress);
        if (o.error) throw errorFromWire(o.error.code, o.error.message);
        if ("result" in o) return o.result as T;
      }
    }
    throw new UnavailableError("The agent's answer ended early: see its log for the outcome");
  }

  async #body(method: string, path: string, body?: unknown): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#fetch(method, path, body);
    if (!res.body) throw new UnavailableError("The agent sent an empty answer");
    return res.body;
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.#fetch(method, path, body);
    return (await res.json()) as T;
  }

  /** One request; a non-2xx answer becomes the agent's own error. */
  async #fetch(method: string, path: string, body?: unknown, contentType?: string): Promise<Response> {
    let res: Response;
    const isStream = body instanceof ReadableStream;
    try {
      res = await fetch(`http://autopod${path}`, {
        method,
        unix: this.socket,
        headers: body === undefined ? {} : { "content-type": contentType ?? "application/json" },
        body: body === undefined ? undefined : isStream ? body : JSON.stringify(body),
        ...(isStream ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (e) {
      const code = (e as { code?: string }).code;
      const why =
        code === "ENOENT"
          ? "no such socket"
          : code === "ECONNREFUSED"
            ? "connection refused"
            : code === "EACCES"
              ? "permission denied: the socket is root's"
              : (e as Error).message;
      throw new UnavailableError(
        `No autopod agent answers at "${this.socket}" (${why}). ` +
          `Start one with \`autopod agent --socket ${this.socket}\` as root (or \`systemctl start autopod\`), ` +
          "or point at another with --socket or AUTOPOD_SOCKET.",
        { cause: e },
      );
    }
    if (res.ok) return res;
    let code = "internal";
    let message = `The agent answered ${res.status} ${res.statusText}`;
    try {
      const j = (await res.json()) as { error?: { code?: string; message?: string } };
      if (j.error?.code) code = j.error.code;
      if (j.error?.message) message = j.error.message;
    } catch {
      // not JSON: keep the status line
    }
    throw errorFromWire(code, message);
  }
}
