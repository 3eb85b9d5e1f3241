import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NotFoundError, UnavailableError } from "../../errors.ts";
import { LocalClient } from "./client.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-client-"));
const socket = join(dir, "api.sock");
const offsets: string[] = [];
const server = Bun.serve({
  unix: socket,
  fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/v1/pods/flaky/logs") {
      const offset = url.searchParams.get("offset")!;
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
    }
    return Response.json({ error: { code: "not_found", message: 'No pod named "ghost"' } }, { status: 404 });
  },
});
afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

test("errors come back as the agent's domain errors", async () => {
  const c = new LocalClient(socket);
  const e = await c.getPod("ghost").catch((x: unknown) => x);
  expect(e).toBeInstanceOf(NotFoundError);
  expect((e as Error).message).toBe('No pod named "ghost"');
});

test("a follower reconnects from where it was when the connection drops", async () => {
  const c = new LocalClient(socket);
  let text = "";
  for await (const chunk of c.logs("flaky", true)) text += new TextDecoder().decode(chunk);
  expect(text).toBe("abcdef");
  expect(offsets).toEqual(["0", "3"]);
});

test("no agent: says where it looked", async () => {
  const c = new LocalClient(join(dir, "none.sock"));
  const e = await c.listPods().catch((x: unknown) => x);
  expect(e).toBeInstanceOf(UnavailableError);
  expect((e as Error).message).toContain(`No autopod agent answers at "${join(dir, "none.sock")}" (no such socket)`);
});
