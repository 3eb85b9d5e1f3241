import { describe, expect, test } from "bun:test";
import { ethernetInterface } from "./libc.ts";

describe("ethernetInterface", () => {
  test("each interface as `ip link` shows it: Ethernet ones with their index and address, others none", () => {
    const links = JSON.parse(Bun.spawnSync(["ip", "-j", "link", "show"]).stdout.toString()) as Array<{
      ifindex: number;
      ifname: string;
      link_type: string;
      address?: string;
    }>;
    expect(links.length).toBeGreaterThan(0);
    for (const l of links) {
      const got = ethernetInterface(l.ifname);
      if (l.link_type === "ether") {
        expect(got?.ifindex).toBe(l.ifindex);
        expect([...(got?.mac ?? [])].map((b) => b.toString(16).padStart(2, "0")).join(":")).toBe(l.address!);
      } else {
        expect(got).toBeNull();
      }
    }
  });

  test("no such interface, or a name no interface can have: none", () => {
    expect(ethernetInterface("aptest-none0")).toBeNull();
    expect(ethernetInterface("")).toBeNull();
    expect(ethernetInterface("x".repeat(16))).toBeNull();
    expect(ethernetInterface("a\0b")).toBeNull();
  });
});
