import { expect, test } from "bun:test";
import { gratuitousArpFrame, parseMac } from "./garp.ts";

test("a gratuitous ARP request: broadcast, sender and target address the same, target MAC zero", () => {
  const mac = parseMac("02:00:0a:d5:00:0a")!;
  const f = gratuitousArpFrame(mac, "10.213.5.130");
  expect(f.length).toBe(42);
  expect([...f.slice(0, 6)]).toEqual([255, 255, 255, 255, 255, 255]);
  expect([...f.slice(6, 12)]).toEqual([...mac]);
  expect([...f.slice(12, 22)]).toEqual([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
  expect([...f.slice(22, 28)]).toEqual([...mac]);
  expect([...f.slice(28, 32)]).toEqual([10, 213, 5, 130]);
  expect([...f.slice(32, 38)]).toEqual([0, 0, 0, 0, 0, 0]);
  expect([...f.slice(38, 42)]).toEqual([10, 213, 5, 130]);
});

test("bad input is refused", () => {
  expect(parseMac("02:00:0a:d5:00")).toBeNull();
  expect(parseMac("zz:00:0a:d5:00:0a")).toBeNull();
  expect(() => gratuitousArpFrame(parseMac("02:00:0a:d5:00:0a")!, "10.213.5.300")).toThrow(/Cannot announce "10.213.5.300"/);
});
