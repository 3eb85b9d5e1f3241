/**
 * The post-copy page link's connections (src/migrate/page-link.ts): the source
 * listens on a port of its own for one migration, the destination connects.
 * Both present the cluster certificate and check the other's: the CA's, not
 * revoked, naming the expected host. The destination's first frame carries the
 * migration's id and secret; anything else, or silence, and the connection is
 * closed before a page goes out.
 */
import { timingSafeEqual } from "node:crypto";
import type { Identity } from "../../cluster/cluster.ts";
import { normalSerial } from "../../cluster/x509.ts";
import { UnavailableError } from "../../errors.ts";
import { FRAME, FrameReader, frame, type PageBridge } from "../../migrate/page-link.ts";
import type { PageLinkExpect } from "../../migrate/peer.ts";

/** How long a connection may take to prove who it is. */
export const HELLO_TIMEOUT_MS = 10_000;

export interface PageLinkServer {
  port: number;
  stop(): void;
}

interface Conn {
  reader: FrameReader;
  isLinked: boolean;
  timer: ReturnType<typeof setTimeout> | null;
}

type PeerCert = { subject?: { CN?: string }; serialNumber?: string } | undefined;

function certRefusal(cert: PeerCert, expected: string, isRevoked: (serial: string) => boolean): string | null {
  if (!cert?.subject?.CN) return "it presented no certificate";
  if (isRevoked(normalSerial(cert.serialNumber ?? ""))) return "its certificate is revoked";
  if (cert.subject.CN !== expected) return `its certificate is for "${cert.subject.CN}", not "${expected}"`;
  return null;
}

function isSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.byteLength === y.byteLength && timingSafeEqual(x, y);
}

/** Listen for the destination of migration `expect.id` on `hostname` (port chosen by the kernel); the first one that proves itself is bridged. */
export function listenPageLink(
  id: Identity,
  isRevoked: (serial: string) => boolean,
  hostname: string,
  expect: PageLinkExpect,
  bridge: PageBridge,
  onRefused: (why: string) => void = () => {},
): PageLinkServer {
  let isTaken = false;
  const refuse = (s: { end(): void; data: Conn }, why: string) => {
    if (s.data.timer) clearTimeout(s.data.timer);
    onRefused(why);
    s.end();
  };
  const server = Bun.listen<Conn>({
    hostname,
    port: 0,
    tls: { key: id.keyPem, cert: id.certPem, ca: id.caCertPem, requestCert: true, rejectUnauthorized: true },
    socket: {
      open(s) {
        s.data = { reader: new FrameReader(), isLinked: false, timer: null };
        s.data.timer = setTimeout(() => refuse(s, "it did not say who it is in time"), HELLO_TIMEOUT_MS);
      },
      handshake(s, ok, err) {
        const why = !ok || err ? `TLS: ${err?.message ?? "handshake failed"}` : certRefusal(s.getPeerCertificate() as PeerCert, expect.peer, isRevoked);
        if (why) refuse(s, why);
      },
      data(s, d) {
        if (s.data.isLinked) return bridge.fromLink(d);
        let frames: ReturnType<FrameReader["push"]>;
        try {
          frames = s.data.reader.push(d);
        } catch {
          return refuse(s, "it does not speak the page link");
        }
        const hello = frames[0];
        if (!hello) return;
        if (hello.type !== FRAME.hello) return refuse(s, "its first frame is not a hello");
        let h: { id?: unknown; secret?: unknown } = {};
        try {
          h = JSON.parse(new TextDecoder().decode(hello.payload)) as typeof h;
        } catch {
          // refused below
        }
        if (h.id !== expect.id || typeof h.secret !== "string" || !isSecret(h.secret, expect.secret))
          return refuse(s, "it does not hold the migration's secret");
        if (isTaken) return refuse(s, "the migration's page link is taken already");
        isTaken = true;
        if (s.data.timer) clearTimeout(s.data.timer);
        s.data.isLinked = true;
        bridge.attachLink(s);
        // Frames that came with the hello, and the start of the next.
        for (const f of frames.slice(1)) bridge.fromLink(frame(f.type, f.payload));
        const rest = s.data.reader.takeRest();
        if (rest.byteLength) bridge.fromLink(rest);
      },
      drain(s) {
        if (s.data.isLinked) bridge.drainLink();
      },
      close(s) {
        if (s.data.timer) clearTimeout(s.data.timer);
        if (s.data.isLinked) bridge.linkClosed();
      },
      error(s) {
        if (s.data.isLinked) bridge.linkClosed();
      },
    },
  });
  return { port: server.port, stop: () => server.stop() };
}

/** Connect to the source's page link of migration `expect.id` and bridge it; resolves once the link is up. */
export function connectPageLink(
  id: Identity,
  isRevoked: (serial: string) => boolean,
  hostname: string,
  port: number,
  expect: PageLinkExpect,
  bridge: PageBridge,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let isUp = false;
    const timer = setTimeout(() => {
      if (!isUp) reject(new UnavailableError(`The page link to "${expect.peer}" (${hostname}:${port}) did not come up in time`));
    }, HELLO_TIMEOUT_MS);
    Bun.connect({
      hostname,
      port,
      tls: { key: id.keyPem, cert: id.certPem, ca: id.caCertPem },
      socket: {
        handshake(s, ok, err) {
          const why = !ok || err ? `TLS: ${err?.message ?? "handshake failed"}` : certRefusal(s.getPeerCertificate() as PeerCert, expect.peer, isRevoked);
          if (why) {
            s.end();
            clearTimeout(timer);
            return reject(new UnavailableError(`Cannot open the page link to "${expect.peer}": ${why}`));
          }
          s.write(frame(FRAME.hello, new TextEncoder().encode(JSON.stringify({ id: expect.id, secret: expect.secret }))));
          isUp = true;
          clearTimeout(timer);
          bridge.attachLink(s);
          resolve();
        },
        data(_s, d) {
          if (isUp) bridge.fromLink(d);
        },
        drain() {
          if (isUp) bridge.drainLink();
        },
        close() {
          if (isUp) bridge.linkClosed();
          else reject(new UnavailableError(`The page link to "${expect.peer}" closed before it came up`));
        },
        error(_s, e) {
          if (isUp) bridge.linkClosed();
          else reject(new UnavailableError(`Cannot open the page link to "${expect.peer}": ${e.message}`));
        },
        connectError(_s, e) {
          clearTimeout(timer);
          reject(new UnavailableError(`Cannot reach the page link of "${expect.peer}" at ${hostname}:${port}: ${e.message}`));
        },
      },
    }).catch((e: unknown) => {
      clearTimeout(timer);
      reject(new UnavailableError(`Cannot reach the page link of "${expect.peer}" at ${hostname}:${port}: ${(e as Error).message}`));
    });
  });
}
