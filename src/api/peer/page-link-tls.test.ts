import { describe, expect, test } from "bun:test";
import { createCa, issueHostCertificate } from "../../cluster/ca.ts";
import type { Identity } from "../../cluster/cluster.ts";
import { PageBridge } from "../../migrate/page-link.ts";
import { connectPageLink, listenPageLink } from "./page-link-tls.ts";

const ID = "0b7c2f1e-5d1a-4c3b-9a8e-2f4d6c8b0a1e";
const SECRET = "ab".repeat(32);

async function identity(ca: Awaited<ReturnType<typeof createCa>>, name: string): Promise<Identity> {
  const h = await issueHostCertificate(ca, name, ["127.0.0.1"]);
  return { keyPem: h.keyPem, certPem: h.certPem, caCertPem: ca.certPem } as unknown as Identity;
}

function collector() {
  const got: Uint8Array[] = [];
  const socket = {
    write(d: Uint8Array): number {
      got.push(d.slice());
      return d.byteLength;
    },
    end() {},
  };
  return { got, socket };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await Bun.sleep(10);
  }
}

describe("page link over mutual TLS", async () => {
  const ca = await createCa("test");
  const src = await identity(ca, "src");
  const dst = await identity(ca, "dst");
  const mallory = await identity(ca, "mallory");
  const foreign = await identity(await createCa("other"), "dst");
  const noRevocations = () => false;

  /** A source listening for "dst"; what it refused, and what its CRIU side received. */
  function source() {
    const refused: string[] = [];
    const failures: string[] = [];
    const bridge = new PageBridge(30_000, { onFailed: (e) => failures.push(e.message) });
    const criu = collector();
    bridge.attachCriu(criu.socket);
    const server = listenPageLink(src, noRevocations, "127.0.0.1", { peer: "dst", id: ID, secret: SECRET }, bridge, (why) => refused.push(why));
    return { bridge, server, refused, failures, criu };
  }

  test("the destination with the cluster's certificate and the secret gets the pages, both ways", async () => {
    const s = source();
    try {
      const d = new PageBridge(30_000, { onFailed: () => {} });
      const criu = collector();
      d.attachCriu(criu.socket);
      await connectPageLink(dst, noRevocations, "127.0.0.1", s.server.port, { peer: "src", id: ID, secret: SECRET }, d);
      d.fromCriu(new TextEncoder().encode("get pages"));
      await until(() => s.criu.got.length > 0);
      expect(new TextDecoder().decode(s.criu.got[0])).toBe("get pages");
      s.bridge.fromCriu(new Uint8Array(5 << 20).fill(7));
      await until(() => d.bytesIn === 5 << 20);
      expect(criu.got.reduce((n, b) => n + b.byteLength, 0)).toBe(5 << 20);
      expect(s.refused).toEqual([]);
      d.close();
    } finally {
      s.bridge.close();
      s.server.stop();
    }
  });

  test("a caller with a wrong secret is refused before a page goes out", async () => {
    const s = source();
    try {
      const failures: string[] = [];
      const d = new PageBridge(30_000, { onFailed: (e) => failures.push(e.message) });
      await connectPageLink(dst, noRevocations, "127.0.0.1", s.server.port, { peer: "src", id: ID, secret: "cd".repeat(32) }, d);
      s.bridge.fromCriu(new Uint8Array(4096));
      await until(() => failures.length > 0);
      expect(s.refused).toEqual(["it does not hold the migration's secret"]);
      expect(d.bytesIn).toBe(0);
    } finally {
      s.bridge.close();
      s.server.stop();
    }
  });

  test("a member whose certificate names another host is refused, even with the secret", async () => {
    const s = source();
    try {
      const d = new PageBridge(30_000, { onFailed: () => {} });
      await connectPageLink(mallory, noRevocations, "127.0.0.1", s.server.port, { peer: "src", id: ID, secret: SECRET }, d).catch(() => undefined);
      await until(() => s.refused.length > 0);
      expect(s.refused[0]).toBe('its certificate is for "mallory", not "dst"');
      expect(d.bytesIn).toBe(0);
    } finally {
      s.bridge.close();
      s.server.stop();
    }
  });

  test("a caller without a certificate, or with another CA's, never gets through", async () => {
    const s = source();
    try {
      for (const who of [{ ...dst, keyPem: "", certPem: "" } as Identity, foreign]) {
        const failures: string[] = [];
        const d = new PageBridge(30_000, { onFailed: (e) => failures.push(e.message) });
        const r = await connectPageLink(who, noRevocations, "127.0.0.1", s.server.port, { peer: "src", id: ID, secret: SECRET }, d).then(
          () => "up",
          (e: Error) => e.message,
        );
        s.bridge.fromCriu(new Uint8Array(4096));
        await Bun.sleep(300);
        expect(d.bytesIn).toBe(0);
        if (r === "up") expect(failures.length).toBeGreaterThan(0);
      }
    } finally {
      s.bridge.close();
      s.server.stop();
    }
  });
});
