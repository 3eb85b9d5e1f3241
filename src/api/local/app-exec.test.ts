import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../log.ts";
import type { PodProcess } from "../../platform/pod-host.ts";
import type { PodRuntime } from "../../pods/runtime.ts";
import { createLocalApp } from "./app.ts";

/** A command that writes forever until killed. */
function chattyProcess(): PodProcess & { kills: number } {
  let isKilled = false;
  let done: (code: number) => void = () => undefined;
  const exited = new Promise<number>((r) => (done = r));
  const out = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (isKilled) return c.close();
      await Bun.sleep(1);
      c.enqueue(new TextEncoder().encode("tick\n"));
    },
  });
  const p = {
    kills: 0,
    stdout: out,
    stderr: new ReadableStream<Uint8Array>({ start: (c) => void exited.then(() => c.close()) }),
    exited,
    write: async () => {},
    endInput() {},
    resize() {},
    kill() {
      p.kills++;
      isKilled = true;
      done(137);
    },
  };
  return p;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("an exec client that disconnects while output flows ends the command, and no timer writes to the closed stream", async () => {
  const procs: ReturnType<typeof chattyProcess>[] = [];
  const pods = {
    exec: () => {
      const p = chattyProcess();
      procs.push(p);
      return p;
    },
  } as unknown as PodRuntime;
  const info = { version: "t", pid: 1, stateDir: "/x", socket: "/x", bridge: "b", subnet: "10.213.0.0/24" };
  const app = createLocalApp({ pods, info, log: createLogger({ level: "error" }), execKeepaliveMs: 5 });
  const dir = mkdtempSync(join(tmpdir(), "autopod-exec-"));
  dirs.push(dir);
  const socket = join(dir, "api.sock");
  const server = Bun.serve({ unix: socket, fetch: app.fetch });
  const errors: unknown[] = [];
  const onError = (e: unknown) => errors.push(e);
  process.on("uncaughtException", onError);
  process.on("unhandledRejection", onError);
  try {
    for (let i = 0; i < 20; i++) {
      const abort = new AbortController();
      const r = await fetch("http://agent/v1/pods/p/exec", {
        unix: socket,
        method: "POST",
        body: JSON.stringify({ cmd: ["x"] }),
        signal: abort.signal,
      });
      const reader = r.body!.getReader();
      for (let n = Math.floor(Math.random() * 5); n >= 0; n--) await reader.read();
      abort.abort();
      await Bun.sleep(Math.random() * 20);
    }
    // Several keepalive periods after the last client left.
    await Bun.sleep(100);
    expect(errors).toEqual([]);
    expect(procs.length).toBe(20);
    for (const p of procs) expect(p.kills).toBeGreaterThan(0);
    const health = await fetch("http://agent/v1/health", { unix: socket });
    expect(health.status).toBe(200);
  } finally {
    process.off("uncaughtException", onError);
    process.off("unhandledRejection", onError);
    server.stop(true);
  }
});
