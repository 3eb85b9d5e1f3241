import { afterAll, expect, test } from "bun:test";
import { ensureBridge, parseIpAddrJson } from "./netns.ts";

const isRoot = process.getuid?.() === 0;
const bridge = `aptbr${process.pid % 100000}`;

afterAll(() => {
  if (isRoot) Bun.spawnSync(["ip", "link", "del", bridge]);
});

test.skipIf(!isRoot)("ensureBridge called several times at once makes one bridge, up, with the address (needs root: makes a bridge)", async () => {
  await Promise.all([1, 2, 3, 4].map(() => ensureBridge(bridge, "10.254.77.1/30")));
  const show = Bun.spawnSync(["ip", "-j", "addr", "show", "dev", bridge]);
  expect(show.exitCode).toBe(0);
  const state = parseIpAddrJson(show.stdout.toString());
  expect(state?.up).toBe(true);
  expect(state?.addresses).toEqual(["10.254.77.1/30"]);
  // Again, all in place: nothing to do.
  await ensureBridge(bridge, "10.254.77.1/30");
});
