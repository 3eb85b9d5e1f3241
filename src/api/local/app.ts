/**
 * The local API (unix socket, root only): a Hono app over the pod runtime.
 * One onError turns domain errors into {error: {code, message}} with the
 * status httpStatusOf gives; LocalClient turns them back.
 */
import { closeSync, readSync } from "node:fs";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import { AutopodError, describeZodError, errorMessage, httpStatusOf, InvalidArgumentError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { openRegularBeneath } from "../../platform/linux/open-beneath.ts";
import type { PodProcess, TerminalSize } from "../../platform/pod-host.ts";
import type { PodRuntime } from "../../pods/runtime.ts";
import { decodeFrames, EXEC_CONTENT_TYPE, encodeFrame, exitFrame, FRAME, type Frame, FrameTooLargeError, sizeOf } from "./exec-frames.ts";
import { readJsonBody } from "./bounded-body.ts";
import { CreatePodBody, ExecBody, ExecStartBody, StopPodBody } from "./schemas.ts";

export interface AgentInfo {
  version: string;
  pid: number;
  stateDir: string;
  socket: string;
  bridge: string;
  subnet: string;
}

export interface LocalAppDeps {
  pods: PodRuntime;
  info: AgentInfo;
  log: Logger;
  /**
   * Other features' routes (checkpoints, images, status), added before the
   * body limit: a route that streams a large body in must bound it itself.
   */
  routes?: Array<(app: Hono) => void>;
  /** How often a silent exec sends a keepalive frame (tests make it short). */
  execKeepaliveMs?: number;
}

const MAX_BODY_BYTES = 1 << 20;
const FOLLOW_POLL_MS = 200;
const EXEC_KEEPALIVE_MS = 60_000;

/**
 * Bun closes a connection idle this long (255 s at most; 0, "never", does not
 * work on unix sockets in Bun 1.4). Exec sends keepalive frames, log
 * followers reconnect, and stop's grace period stays below it.
 */
export const IDLE_TIMEOUT_SECONDS = 255;

function body<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  return readJsonBody(c.req.raw, schema, MAX_BODY_BYTES);
}

export function createLocalApp(deps: LocalAppDeps): Hono {
  const { pods, log } = deps;
  const keepaliveMs = deps.execKeepaliveMs ?? EXEC_KEEPALIVE_MS;
  const app = new Hono();

  app.onError((err, c) => {
    const status = httpStatusOf(err);
    const code = err instanceof AutopodError ? err.code : "internal";
    if (status >= 500) log.error("request failed", { method: c.req.method, path: c.req.path, error: errorMessage(err) });
    return c.json({ error: { code, message: errorMessage(err) } }, status as 500);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: `No such endpoint: ${c.req.method} ${c.req.path}` } }, 404));
  for (const add of deps.routes ?? []) add(app);

  // Before the body limit: an interactive exec's input streams for as long as the session lasts (its frames are bounded one by one).
  app.post("/v1/pods/:name/exec", async (c) => {
    const { cmd, stdin, tty, input } = await execRequest(c);
    const proc = pods.exec(c.req.param("name"), cmd, { hasStdin: stdin, ...(tty ? { tty } : {}) });
    if (input) void pumpInput(input, proc, log);
    // The client may go at any moment: after that, nothing is sent and the command is killed,
    // and no timer or pump may touch the closed stream (that threw in a timer and ended the agent).
    let isGone = false;
    let keepalive: ReturnType<typeof setInterval> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      async start(ctrl) {
        const send = (frame: Uint8Array) => {
          if (isGone) return;
          try {
            ctrl.enqueue(frame);
          } catch {
            // Closed under us: the client is gone, and so is the command's reason to run.
            isGone = true;
            proc.kill();
          }
        };
        const pump = async (s: ReadableStream<Uint8Array>, type: typeof FRAME.stdout | typeof FRAME.stderr) => {
          for await (const chunk of s) send(encodeFrame(type, chunk));
        };
        // A silent command must not look like an idle connection.
        keepalive = setInterval(() => send(encodeFrame(FRAME.keepalive, new Uint8Array(0))), keepaliveMs);
        try {
          await Promise.all([pump(proc.stdout, FRAME.stdout), pump(proc.stderr, FRAME.stderr)]);
          send(exitFrame(await proc.exited));
        } catch (e) {
          send(encodeFrame(FRAME.error, new TextEncoder().encode(JSON.stringify({ code: "internal", message: errorMessage(e) }))));
        } finally {
          clearInterval(keepalive);
        }
        if (isGone) return;
        isGone = true;
        try {
          ctrl.close();
        } catch {
          // cancelled meanwhile
        }
      },
      cancel() {
        isGone = true;
        clearInterval(keepalive);
        proc.kill();
      },
    });
    return new Response(stream, { headers: { "content-type": EXEC_CONTENT_TYPE } });
  });

  app.use(
    "*",
    bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => c.json({ error: { code: "invalid_argument", message: "The request body is too large" } }, 413) }),
  );

  app.get("/v1/health", (c) => c.json({ ok: true, ...deps.info }));

  app.get("/v1/pods", (c) => c.json({ pods: pods.list() }));

  app.post("/v1/pods", async (c) => {
    const req = await body(c, CreatePodBody);
    return c.json({ pod: await pods.create(req) }, 201);
  });

  app.get("/v1/pods/:name", (c) => c.json({ pod: pods.get(c.req.param("name")) }));

  app.post("/v1/pods/:name/stop", async (c) => {
    const { timeoutSeconds } = await body(c, StopPodBody);
    return c.json({ pod: await pods.stop(c.req.param("name"), timeoutSeconds) });
  });

  app.delete("/v1/pods/:name", async (c) => {
    const force = c.req.query("force");
    if (force !== undefined && force !== "true" && force !== "false") throw new InvalidArgumentError(`force must be true or false (got "${force}")`);
    await pods.remove(c.req.param("name"), force === "true");
    return c.json({ removed: c.req.param("name") });
  });

  app.get("/v1/pods/:name/logs", (c) => {
    const { file, isLive } = pods.logs(c.req.param("name"));
    const follow = c.req.query("follow") === "true";
    const offset = Number(c.req.query("offset") ?? 0);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`offset must be a byte count (got "${c.req.query("offset")}")`);
    readLog(file, 0, 0); // a log the pod made unreadable (a link, a FIFO) fails here, as an error the client gets
    const stream = logStream(file, offset, follow, isLive, c.req.raw.signal);
    return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
  });

  return app;
}

/** One frame of exec input is at most this long (a start frame with its command, or a chunk of stdin). */
const MAX_INPUT_FRAME_BYTES = 1 << 20;

/**
 * An exec request: a JSON body (no input), or, with EXEC_CONTENT_TYPE, a
 * start frame whose input frames follow on the same request body.
 */
async function execRequest(c: Context): Promise<{ cmd: string[]; stdin: boolean; tty: TerminalSize | null; input: AsyncGenerator<Frame> | null }> {
  if (!(c.req.header("content-type") ?? "").startsWith(EXEC_CONTENT_TYPE)) return { ...(await body(c, ExecBody)), stdin: false, tty: null, input: null };
  if (!c.req.raw.body) throw new InvalidArgumentError("An interactive exec needs its frames in the request body");
  const input = decodeFrames(c.req.raw.body, MAX_INPUT_FRAME_BYTES);
  let first: IteratorResult<Frame>;
  try {
    first = await input.next();
  } catch (e) {
    throw new InvalidArgumentError(`Invalid exec request: ${errorMessage(e)}`);
  }
  if (first.done || first.value.type !== FRAME.start) throw new InvalidArgumentError("An interactive exec begins with a start frame");
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(first.value.payload));
  } catch {
    throw new InvalidArgumentError("The exec start frame is not valid JSON");
  }
  const parsed = ExecStartBody.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(`Invalid request: ${describeZodError(parsed.error)}`);
  return { ...parsed.data, input };
}

/** Feed an exec's input frames to the command until the caller ends its input or goes; never throws. */
async function pumpInput(input: AsyncGenerator<Frame>, proc: PodProcess, log: Logger): Promise<void> {
  try {
    for await (const f of input) {
      if (f.type === FRAME.stdin) await proc.write(f.payload);
      else if (f.type === FRAME.stdinEnd) proc.endInput();
      else if (f.type === FRAME.resize) {
        const size = sizeOf(f);
        if (size) proc.resize(size);
      }
    }
  } catch (e) {
    // The caller went (its body broke off) or sent nonsense: no more input either way.
    if (e instanceof FrameTooLargeError) log.warn("exec input refused", { error: errorMessage(e) });
  } finally {
    proc.endInput();
  }
}

/** The pod's log: its size and, from `offset`, up to `max` bytes; opened beneath the layer without following links (the pod owns the path). */
function readLog(file: { dir: string; rel: string }, offset: number, max: number): { size: number; data: Uint8Array | null } {
  const f = openRegularBeneath(file.dir, file.rel);
  if (f === null) return { size: 0, data: null };
  try {
    const size = f.stat.size;
    if (size <= offset) return { size, data: null };
    const buf = new Uint8Array(Math.min(size - offset, max));
    const n = readSync(f.fd, buf, 0, buf.byteLength, offset);
    return { size, data: buf.subarray(0, n) };
  } finally {
    closeSync(f.fd);
  }
}

/** The log from the start; with follow, new output as it comes until the pod has ended and all is read. */
function logStream(file: { dir: string; rel: string }, from: number, follow: boolean, isLive: () => boolean, abort: AbortSignal): ReadableStream<Uint8Array> {
  let offset = from;
  let isGone = false;
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      for (;;) {
        if (isGone) return;
        let size: number;
        let data: Uint8Array | null;
        try {
          ({ size, data } = readLog(file, offset, 1 << 20));
          if (size < offset) {
            offset = 0; // truncated
            ({ size, data } = readLog(file, offset, 1 << 20));
          }
        } catch {
          // The pod turned its log into something we do not read (a link) since the request began: the log ends here.
          ctrl.close();
          return;
        }
        if (data !== null && data.byteLength > 0) {
          ctrl.enqueue(data);
          offset += data.byteLength;
          return;
        }
        // Read once more after the pod ends: its last words may have come after our last look.
        const live = follow && isLive();
        if (!live || abort.aborted) {
          let again = 0;
          try {
            again = readLog(file, offset, 0).size;
          } catch {
            // as above
          }
          if (again > offset) continue;
          ctrl.close();
          return;
        }
        await Bun.sleep(FOLLOW_POLL_MS);
      }
    },
    cancel() {
      isGone = true;
    },
  });
}
