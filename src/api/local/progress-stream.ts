/**
 * A long operation's answer with its progress on the way: the body is
 * newline-delimited JSON, `{"progress": Progress}` lines (at most one per
 * 100 ms, one at once on a phase change, and one every few seconds while
 * nothing moves, so an idle connection is never mistaken for a dead one),
 * then one `{"result": T}` or `{"error": {"code", "message"}}` line. A route
 * answers this way when asked with `?progress=true`; without, it answers
 * plain JSON as before. The operation runs to its end even if the client
 * goes away (as it would without progress).
 */
import { AutopodError, errorFromWire, errorMessage, InvalidArgumentError, UnavailableError } from "../../errors.ts";
import type { OnProgress, Progress } from "../../progress.ts";

export const PROGRESS_CONTENT_TYPE = "application/x-ndjson";

/** Longest line the client accepts: a result is a small report. */
const MAX_LINE_BYTES = 1 << 20;

export interface ProgressStreamOptions {
  /** At most one progress line this often (a phase change is sent at once). */
  intervalMs?: number;
  /** The last progress again after this long without a line. */
  heartbeatMs?: number;
}

/** Whether a request's `?progress=` asks for a progress stream ("true"); anything but true or false is refused. */
export function wantsProgress(raw: string | undefined): boolean {
  if (raw !== undefined && raw !== "true" && raw !== "false") throw new InvalidArgumentError(`progress must be true or false (got "${raw.slice(0, 40)}")`);
  return raw === "true";
}

/** Run `work`, streaming its progress and then its result (or error) as NDJSON. */
export function progressResponse<T>(work: (onProgress: OnProgress) => Promise<T>, options: ProgressStreamOptions = {}): Response {
  const intervalMs = options.intervalMs ?? 100;
  const heartbeatMs = options.heartbeatMs ?? 5000;
  const encoder = new TextEncoder();
  let isGone = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(ctrl) {
      const send = (line: unknown) => {
        if (isGone) return;
        try {
          ctrl.enqueue(encoder.encode(`${JSON.stringify(line)}\n`));
        } catch {
          isGone = true; // the client left; the work goes on
        }
      };
      let last: Progress | null = null;
      let lastSent = 0;
      const onProgress: OnProgress = (p) => {
        const now = performance.now();
        const isNewPhase = last === null || last.phase !== p.phase;
        last = { phase: p.phase, bytes: p.bytes, totalBytes: p.totalBytes };
        if (!isNewPhase && now - lastSent < intervalMs) return;
        lastSent = now;
        send({ progress: last });
      };
      heartbeat = setInterval(() => {
        if (last !== null && performance.now() - lastSent >= heartbeatMs) {
          lastSent = performance.now();
          send({ progress: last });
        }
      }, heartbeatMs);
      void (async () => {
        try {
          const result = await work(onProgress);
          send({ result });
        } catch (e) {
          send({ error: { code: e instanceof AutopodError ? e.code : "internal", message: errorMessage(e) } });
        } finally {
          clearInterval(heartbeat);
        }
        if (isGone) return;
        isGone = true;
        try {
          ctrl.close();
        } catch {
          // cancelled meanwhile
        }
      })();
    },
    cancel() {
      isGone = true;
    },
  });
  return new Response(stream, { headers: { "content-type": PROGRESS_CONTENT_TYPE } });
}

/** Read a progressResponse body: progress to `onProgress`, then the result; an error line is thrown as the agent's error. */
export async function readProgressStream<T>(body: ReadableStream<Uint8Array>, onProgress: OnProgress): Promise<T> {
  const decoder = new TextDecoder();
  let pending = "";
  const handle = (line: string): { result: T } | null => {
    if (line.trim() === "") return null;
    let msg: { progress?: Progress; result?: T; error?: { code?: string; message?: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      throw new UnavailableError(`The agent sent a progress line that is not JSON: "${line.slice(0, 80)}"`);
    }
    if (msg.error) throw errorFromWire(msg.error.code ?? "internal", msg.error.message ?? "The agent reported an error without a message");
    if ("result" in msg) return { result: msg.result as T };
    const p = msg.progress;
    if (p && typeof p.phase === "string" && typeof p.bytes === "number" && (p.totalBytes === null || typeof p.totalBytes === "number")) onProgress(p);
    return null;
  };
  for await (const chunk of body) {
    pending += decoder.decode(chunk, { stream: true });
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const done = handle(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (done) return done.result;
    }
    if (pending.length > MAX_LINE_BYTES) throw new UnavailableError(`The agent sent a progress line over ${MAX_LINE_BYTES} bytes`);
  }
  const done = handle(pending);
  if (done) return done.result;
  throw new UnavailableError("The agent's answer ended before its result (did the agent stop?)");
}
