import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { quickSocket, type SocketOptions } from "./socket.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-socket-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const withSocket = file("with.toml", 'socket = "/srv/a.sock"\nstate_dir = "/srv"\n');
const without = file("without.toml", 'state_dir = "/srv"\n');
const badOther = file("bad-other.toml", 'socket = "/srv/b.sock"\nlog_level = "loud"\n');
const badSocket = file("bad-socket.toml", 'socket = "relative.sock"\n');
const badType = file("bad-type.toml", "socket = 7\n");
const unparsable = file("unparsable.toml", "socket = \n[[\n");
const missing = join(dir, "missing.toml");

/** What the full loader says of the socket: its path, or "error". */
async function fullAnswer(o: SocketOptions): Promise<string> {
  try {
    return (await loadConfig({ path: o.path, env: o.env, flags: { socket: o.flag } })).config.socket;
  } catch {
    return "error";
  }
}

test("the socket is the one the full config names, or null where only the full loader can answer", async () => {
  const cases: Array<[SocketOptions, string | null]> = [
    [{ env: { AUTOPOD_CONFIG: withSocket } }, "/srv/a.sock"],
    [{ path: withSocket, env: {} }, "/srv/a.sock"],
    [{ env: { AUTOPOD_CONFIG: without } }, "/run/autopod/autopod.sock"],
    [{ env: { AUTOPOD_CONFIG: withSocket, AUTOPOD_SOCKET: "/env.sock" } }, "/env.sock"],
    [{ env: { AUTOPOD_CONFIG: withSocket, AUTOPOD_SOCKET: "/env.sock" }, flag: "/flag.sock" }, "/flag.sock"],
    [{ env: { AUTOPOD_CONFIG: withSocket }, flag: "rel.sock" }, null],
    [{ env: { AUTOPOD_CONFIG: withSocket, AUTOPOD_SOCKET: "/a/../b.sock" } }, null],
    [{ env: { AUTOPOD_CONFIG: withSocket, AUTOPOD_SOCKET: "" } }, null],
    [{ env: { AUTOPOD_CONFIG: badSocket } }, null],
    [{ env: { AUTOPOD_CONFIG: badType } }, null],
    [{ env: { AUTOPOD_CONFIG: unparsable } }, null],
    [{ env: { AUTOPOD_CONFIG: missing } }, null],
    [{ env: { AUTOPOD_CONFIG: missing, AUTOPOD_SOCKET: "/env.sock" } }, null],
  ];
  for (const [opts, want] of cases) {
    expect({ opts, got: await quickSocket(opts) }).toEqual({ opts, got: want });
    // Where it answers, the full loader agrees; where it does not, the full loader refuses (and says why).
    expect({ opts, full: await fullAnswer(opts) }).toEqual({ opts, full: want ?? "error" });
  }
});

test("a file invalid elsewhere still names its socket (the agent, which reads it all, refuses it)", async () => {
  expect(await quickSocket({ env: { AUTOPOD_CONFIG: badOther } })).toBe("/srv/b.sock");
});
