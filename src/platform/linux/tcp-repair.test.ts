import { describe, expect, test } from "bun:test";
import { parseProcNetTcp } from "./tcp-repair.ts";

// Captured from /proc/PID/net/tcp of a pod with an echo server and one client.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 81230D0A:1B58 FA230D0A:A1C2 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 20 4 30 10 -1
`;

describe("parseProcNetTcp", () => {
  test("socket inodes with their states", () => {
    expect([...parseProcNetTcp(TCP)]).toEqual([
      ["123456", "0A"],
      ["123457", "01"],
    ]);
  });
  test("the header alone, or nothing", () => {
    expect(parseProcNetTcp(TCP.split("\n")[0]!).size).toBe(0);
    expect(parseProcNetTcp("").size).toBe(0);
  });
});
