/**
 * A pod's network lock through nf_tables' netlink (src/platform/linux/nft-netlink.ts):
 * the same ruleset nft makes from netlock.ts's, real packets dropped both ways while
 * it holds, and the locks CRIU leaves behind found and removed. Needs root and nftables.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { lockNetwork, unlockNetwork } from "../src/platform/linux/netlock.ts";
import { removeNetworkLock } from "../src/platform/linux/criu-runner.ts";
import { listTablesNetlink } from "../src/platform/linux/nft-netlink.ts";
import { BUN, isRoot, rootTest } from "./_support.ts";

const NS = `aptest-nl${process.pid}`;
const PATH = `/run/netns/${NS}`;

function sh(argv: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}
const inNs = (argv: string[]) => sh(["nsenter", `--net=${PATH}`, "--", ...argv]);
/** A UDP datagram from the namespace to itself on lo (it passes output, then input), received within half a second. */
const ECHO = `
let heard = () => {};
const seen = new Promise((resolve) => { heard = () => resolve(true); });
const r = await Bun.udpSocket({ hostname: "127.0.0.1", socket: { data: () => heard() } });
const s = await Bun.udpSocket({});
s.send("x", r.port, "127.0.0.1");
process.exit((await Promise.race([seen, new Promise((t) => setTimeout(() => t(false), 500))])) ? 0 : 1);
`;
const pingOk = () => inNs([BUN, "-e", ECHO]).code === 0;

beforeAll(() => {
  if (!isRoot) return;
  sh(["ip", "netns", "add", NS]);
  inNs(["ip", "link", "set", "lo", "up"]);
});
afterAll(() => {
  if (isRoot) sh(["ip", "netns", "del", NS]);
});

describe("the network lock through netlink", () => {
  rootTest("locks as nft's ruleset does, drops packets both ways, and lifts", async () => {
    expect(pingOk()).toBe(true);
    await lockNetwork(PATH);
    const ruleset = inNs(["nft", "list", "table", "inet", "autopod-lock"]).out;
    expect(ruleset).toContain("type filter hook input priority -1000; policy drop;");
    expect(ruleset).toContain("type filter hook output priority -1000; policy drop;");
    expect(pingOk()).toBe(false);
    // Again while locked: no error, still one table.
    await lockNetwork(PATH);
    expect(listTablesNetlink(PATH)).toEqual([{ family: "inet", name: "autopod-lock" }]);
    await unlockNetwork(PATH);
    expect(listTablesNetlink(PATH)).toEqual([]);
    expect(pingOk()).toBe(true);
    // Unlocking an unlocked namespace is no error.
    await unlockNetwork(PATH);
  });

  rootTest("finds and removes the tables CRIU left, and only those", async () => {
    inNs(["nft", "add", "table", "inet", "CRIU-4242"]);
    inNs(["nft", "add", "table", "ip", "CRIU-77"]);
    inNs(["nft", "add", "table", "inet", "someone-else"]);
    const removed = await removeNetworkLock(PATH);
    expect(removed.sort()).toEqual(["inet CRIU-4242", "ip CRIU-77"]);
    expect(inNs(["nft", "list", "tables"]).out.trim()).toBe("table inet someone-else");
    inNs(["nft", "delete", "table", "inet", "someone-else"]);
  });
});
