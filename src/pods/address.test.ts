import { expect, test } from "bun:test";
import { allocateAddress, formatIPv4, gatewayOf, parseIPv4, parseSubnet, podPrefixOf, whyNotPodAddress } from "./address.ts";

test("parse and format", () => {
  expect(parseIPv4("10.213.0.7")).toBe(0x0ad50007);
  expect(formatIPv4(0x0ad50007)).toBe("10.213.0.7");
  expect(parseIPv4("10.213.0.256")).toBeNull();
  expect(parseIPv4("10.213.0")).toBeNull();
  expect(parseSubnet("10.213.5.9/24")).toEqual({ network: 0x0ad50500, prefix: 24 });
  expect(parseSubnet("10.213.5.0/33")).toBeNull();
  expect(parseSubnet("10.213.5.0")).toBeNull();
});

test("pod addresses", () => {
  const s = parseSubnet("10.213.5.0/24")!;
  expect(formatIPv4(gatewayOf(s))).toBe("10.213.5.1");
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.9")!)).toBeNull();
  expect(whyNotPodAddress(s, parseIPv4("10.213.6.9")!)).toMatch(/outside/);
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.1")!)).toMatch(/bridge/);
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.255")!)).toMatch(/broadcast/);
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.0")!)).toMatch(/network/);
});

test("allocation takes the lowest free address and stops when full", () => {
  const s = parseSubnet("10.213.5.0/29")!; // .2 to .6 are pod addresses
  const used = new Set([parseIPv4("10.213.5.2")!, parseIPv4("10.213.5.4")!]);
  expect(formatIPv4(allocateAddress(s, used)!)).toBe("10.213.5.3");
  for (const last of [3, 5, 6]) used.add(parseIPv4(`10.213.5.${last}`)!);
  expect(allocateAddress(s, used)).toBeNull();
});

test("a routed subnet reserves no bridge address, and its pods are /32", () => {
  const s = { ...parseSubnet("10.213.5.128/25")!, routed: true };
  expect(podPrefixOf(s)).toBe(32);
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.129")!)).toBeNull();
  expect(whyNotPodAddress(s, parseIPv4("10.213.5.255")!)).toMatch(/broadcast/);
  expect(formatIPv4(allocateAddress(s, new Set())!)).toBe("10.213.5.129");
});
