/**
 * LocalClient against the real local app (createLocalApp over the real
 * PodRuntime with a fake host), served by Bun.serve on a unix socket: what
 * the CLI does, end to end but for the OS. One test keeps a hand-made server:
 * a connection dropped mid-log, which a real agent does only on an idle
 * timeout of minutes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AlreadyExistsError, AutopodError, ConflictError, InvalidArgumentError, NotFoundError, UnavailableError } from "../../errors.ts";
import { createLogger } from "../../log.ts";
import type { PodProcess } from "../../platform/pod-host.ts";
import { FakeHost } from "../../pods/fake-host.ts";
import { PodRuntime } from "../../pods/runtime.ts";
import { PodStore } from "../../pods/store.ts";
import { createLocalApp, IDLE_TIMEOUT_SECONDS } from "./app.ts";
import { LocalClient } from "./client.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-client-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fake host, but exec runs the command here (no pod): its output and exit status travel the real exec frames. */
class ExecHost extends FakeHost {
  execs: string[][] = [];
  resizes: Array<{ rows: number; cols: number }> = [];
  override execInPod(o: Parameters<FakeHost["execInPod"]>[0]): PodProcess {
    this.execs.push(o.cmd);
    const p = Bun.spawn(o.cmd, { stdout: "pipe", stderr: "pipe", stdin: o.hasStdin ? "pipe" : "ignore" });
    const sink = o.hasStdin ? (p.stdin as import("bun").FileSink) : null;
    return {
      stdout: p.stdout,
      stderr: p.stderr,
      exited: p.exited,
      kill: () => p.kill(),
      write: async (d) => {
        sink?.write(d);
        await sink?.flush();
      },
      endInput: () => void sink?.end(),
      resize: (s) => this.resizes.push(s),
    };
  }
}

describe("LocalClient against the real local app", () => {
  const socket = join(dir, "api.sock");
  const host = new ExecHost();
  const store = new PodStore(join(dir, "autopod.db"));
  const log = createLogger({ level: "error", write: () => {} });
  const pods = new PodRuntime({ stateDir: dir, agentKey: "k1", bridge: "br0", subnet: "10.213.7.0/29", layer: "overlay", store, host, log });
  const info = { version: "test", pid: process.pid, stateDir: dir, socket, bridge: "br0", subnet: "10.213.7.0/29" };
  const app = createLocalApp({ pods, info, log });
  let server: ReturnType<typeof Bun.serve>;
  const client = new LocalClient(socket);
  beforeAll(() => {
    // As the agent serves it (idleTimeout is typed for TCP only, but Bun applies it to unix sockets too).
    const options = { unix: socket, fetch: app.fetch, idleTimeout: IDLE_TIMEOUT_SECONDS };
    server = Bun.serve(options as unknown as Parameters<typeof Bun.serve>[0]);
  });
  afterAll(() => {
    server.stop(true);
    store.close();
  });

  test("health", async () => {
    expect(await client.health()).toEqual({ ok: true, ...info });
  });

  test("create, list, get, stop and remove a pod", async () => {
    const created = await client.createPod({ name: "web", rootfs: "/base", cmd: ["sleep", "1000"] } as never);
    expect(created).toMatchObject({ name: "web", state: "running", address: "10.213.7.2/29" });
    expect((await client.listPods()).map((p) => p.name)).toEqual(["web"]);
    expect(await client.getPod("web")).toEqual(created);
    const stopped = await client.stopPod("web", 0);
    expect(stopped.state).toMatch(/^(stopped|exited)$/);
    await client.removePod("web", false);
    expect(await client.listPods()).toEqual([]);
  });

  test("errors come back as the agent's domain errors, with its messages", async () => {
    const err = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e: unknown) => e as Error,
      );
    const ghost = await err(client.getPod("ghost"));
    expect(ghost).toBeInstanceOf(NotFoundError);
    expect(ghost!.message).toBe('No pod named "ghost"');
    await client.createPod({ name: "db", rootfs: "/base", cmd: ["sleep", "1000"] } as never);
    const twice = await err(client.createPod({ name: "db", rootfs: "/base", cmd: ["sleep", "1000"] } as never));
    expect(twice).toBeInstanceOf(AlreadyExistsError);
    expect(twice!.message).toBe('Pod "db" already exists');
    const running = await err(client.removePod("db", false));
    expect(running).toBeInstanceOf(ConflictError);
    expect(running!.message).toBe('Pod "db" is running: stop it first, or use --force');
    const long = await err(client.stopPod("db", 10_000));
    expect(long).toBeInstanceOf(InvalidArgumentError);
    expect(long!.message).toMatch(/^Invalid request: timeoutSeconds: /);
    const badName = await err(client.createPod({ name: "Bad", rootfs: "/base", cmd: ["sleep", "1"] } as never));
    expect(badName).toBeInstanceOf(InvalidArgumentError);
    expect(badName!.message).toContain('Invalid pod name "Bad"');
    // A name that needs escaping reaches the route as itself (and is refused there).
    const odd = await err(client.getPod("a/b?c"));
    expect(odd).toBeInstanceOf(InvalidArgumentError);
    expect(odd!.message).toContain('Invalid pod name "a/b?c"');
    await client.removePod("db", true);
  });

  test("exec: stdout, stderr and the exit status travel as frames", async () => {
    await client.createPod({ name: "ex", rootfs: "/base", cmd: ["sleep", "1000"] } as never);
    let out = "";
    let err = "";
    const dec = new TextDecoder();
    const code = await client.exec("ex", ["sh", "-c", "echo out; echo err >&2; exit 7"], {
      stdout: (c) => (out += dec.decode(c)),
      stderr: (c) => (err += dec.decode(c)),
    });
    expect([code, out, err]).toEqual([7, "out\n", "err\n"]);
    expect(host.execs.at(-1)).toEqual(["sh", "-c", "echo out; echo err >&2; exit 7"]);
    const gone = await client.exec("nope", ["true"], { stdout() {}, stderr() {} }).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(NotFoundError);
    await client.removePod("ex", true);
    const stopped = await client.exec("ex", ["true"], { stdout() {}, stderr() {} }).catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(NotFoundError);
  });

  test("exec -i: stdin streams in while output streams out, its end ends the command's input, and resizes reach the process", async () => {
    await client.createPod({ name: "ei", rootfs: "/base", cmd: ["sleep", "1000"] } as never);
    const dec = new TextDecoder();
    let out = "";
    let gotFirst: () => void = () => {};
    const firstSeen = new Promise<void>((r) => (gotFirst = r));
    let resize: (s: { rows: number; cols: number }) => void = () => {};
    async function* typed() {
      yield new TextEncoder().encode("one\n");
      await firstSeen; // full duplex: the output of the first line comes back before the second is sent
      resize({ rows: 40, cols: 120 });
      yield new TextEncoder().encode("two\n");
      yield new Uint8Array(300_000).fill(120); // over the agent's frame limit once: sent in pieces
    }
    const code = await client.exec(
      "ei",
      ["sh", "-c", "while read l; do echo got $l; done; wc -c"],
      {
        stdout: (c) => {
          out += dec.decode(c);
          if (out.includes("got one")) gotFirst();
        },
        stderr() {},
      },
      {
        stdin: typed(),
        onResize: (l) => {
          resize = l;
          return () => {};
        },
      },
    );
    expect(code).toBe(0);
    expect(out.split("\n").slice(0, 2)).toEqual(["got one", "got two"]);
    expect(out.trim().split("\n").at(-1)!.trim()).toBe("0"); // `read` took the 300,000 bytes without newline, then wc saw the end
    expect(host.resizes).toEqual([{ rows: 40, cols: 120 }]);
    await client.removePod("ei", true);
  });

  test("logs, whole and followed until the pod has ended", async () => {
    await client.createPod({ name: "lg", rootfs: "/base", cmd: ["sleep", "1000"] } as never);
    const log = host.logFile({ layerDir: join(dir, "pods/lg") });
    const file = join(log.dir, log.rel);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, "one\n");
    const read = async (follow: boolean) => {
      let text = "";
      for await (const chunk of client.logs("lg", follow)) text += new TextDecoder().decode(chunk);
      return text;
    };
    expect(await read(false)).toBe("one\n");
    // Followed: the new line comes, then the pod ends and the stream with it.
    const following = read(true);
    await Bun.sleep(300);
    writeFileSync(file, "one\ntwo\n");
    await Bun.sleep(300);
    await client.stopPod("lg", 0);
    expect(await following).toBe("one\ntwo\n");
    await client.removePod("lg", true);
  });

  test("an error the agent did not map arrives as an internal AutopodError with its message", async () => {
    const broken = new LocalClient(socket);
    const e = await broken.importImage(new Blob(["x"]).stream()).catch((x: unknown) => x);
    // No image routes in this app: the 404 names the endpoint.
    expect(e).toBeInstanceOf(AutopodError);
    expect((e as AutopodError).code).toBe("not_found");
    expect((e as Error).message).toBe("No such endpoint: POST /v1/images/import");
  });
});

describe("LocalClient and a dropped connection (a hand-made server)", () => {
  const socket = join(dir, "flaky.sock");
  const offsets: string[] = [];
  const server = Bun.serve({
    unix: socket,
    fetch(req) {
      const offset = new URL(req.url).searchParams.get("offset")!;
      offsets.push(offset);
      if (offset === "0") {
        // Send part of the log, then drop the connection as an idle timeout would.
        let sent = false;
        return new Response(
          new ReadableStream({
            async pull(c) {
              if (!sent) {
                sent = true;
                c.enqueue(new TextEncoder().encode("abc"));
                return;
              }
              await Bun.sleep(50);
              c.error(new Error("dropped"));
            },
          }),
        );
      }
      return new Response("def");
    },
  });
  afterAll(() => server.stop(true));

  test("a follower reconnects from where it was when the connection drops", async () => {
    const c = new LocalClient(socket);
    let text = "";
    for await (const chunk of c.logs("flaky", true)) text += new TextDecoder().decode(chunk);
    expect(text).toBe("abcdef");
    expect(offsets).toEqual(["0", "3"]);
  });
});

test("no agent: says where it looked", async () => {
  const c = new LocalClient(join(dir, "none.sock"));
  const e = await c.listPods().catch((x: unknown) => x);
  expect(e).toBeInstanceOf(UnavailableError);
  expect((e as Error).message).toContain(`No autopod agent answers at "${join(dir, "none.sock")}" (no such socket)`);
});
