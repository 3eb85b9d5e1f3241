/**
 * This host's membership of a cluster: the CA certificate, its own
 * certificate and key, the revocation list, the peers it knows, and (on the
 * host that made the cluster) the CA key and the hosts it issued. All of it
 * lives in one private directory (`peer.tls_dir`, default <state>/tls).
 *
 * Revocation: `remove-host` on the CA host writes a new revocation list
 * (signed by the CA) and sends it to every peer it reaches; every host also
 * asks its peers for theirs when it talks to them and keeps the newest one
 * the CA signed. So a removed host is refused by every host that has heard
 * of the removal from any member, whether the removed host is up or not.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, PreconditionError } from "../errors.ts";
import { decodeBundle, encodeBundle, HostNameSchema } from "./bundle.ts";
import {
  type CaMaterial,
  type CertInfo,
  certInfo,
  createCa,
  issueHostCertificate,
  keyMatchesCertificate,
  makeCrl,
  verifyCrl,
  verifyHostCertificate,
} from "./ca.ts";
import { readIfExists, writeFileAtomic } from "./_files.ts";
import { x509 } from "./x509.ts";

const MembershipFile = z.object({ version: z.literal(1), cluster: z.string(), host: z.string(), addresses: z.array(z.string()) }).strict();
const MembersFile = z
  .object({
    version: z.literal(1),
    hosts: z.record(
      z.string(),
      z.object({ serial: z.string(), addresses: z.array(z.string()), issuedAt: z.string(), revokedAt: z.string().optional() }).strict(),
    ),
    revoked: z.array(z.object({ serial: z.string(), host: z.string(), at: z.string() }).strict()),
  })
  .strict();
const PeersFile = z.object({ version: z.literal(1), peers: z.record(z.string(), z.object({ url: z.string() }).strict()) }).strict();

export type Members = z.infer<typeof MembersFile>;

export interface Identity {
  cluster: string;
  host: string;
  addresses: string[];
  caCertPem: string;
  certPem: string;
  keyPem: string;
  crlPem: string;
  cert: CertInfo;
  revoked: Set<string>;
  crlTime: Date;
  /** This host holds the CA key: it can add and remove hosts. */
  isCa: boolean;
}

export interface PeerEntry {
  name: string;
  url: string;
}

export interface ClusterView {
  joined: boolean;
  cluster?: string;
  host?: string;
  addresses?: string[];
  isCa?: boolean;
  certificate?: { serial: string; notAfter: string };
  revocationListTime?: string;
  revoked?: string[];
  hosts?: Array<{ name: string; serial: string; addresses: string[]; issuedAt: string; revokedAt?: string }>;
  peers: PeerEntry[];
}

export const PeerUrlSchema = z
  .string()
  .max(300)
  .refine((u) => {
    try {
      const url = new URL(u);
      return url.protocol === "https:" && url.pathname === "/" && !url.search && !url.username && !url.password;
    } catch {
      return false;
    }
  }, "an https URL of a peer's API, like https://10.213.0.11:7443");

export class Cluster {
  #identity: Identity | null = null;
  #listeners: Array<() => void> = [];

  private constructor(readonly dir: string) {}

  /** Open the directory; a host that has not joined a cluster has no identity. */
  static async open(dir: string): Promise<Cluster> {
    const c = new Cluster(dir);
    await c.#load();
    return c;
  }

  get identity(): Identity | null {
    return this.#identity;
  }

  /** Called after anything a TLS listener depends on changed (joined, revocations). */
  onChange(fn: () => void): void {
    this.#listeners.push(fn);
  }

  async init(cluster: string, host: string, addresses: string[]): Promise<ClusterView> {
    this.#refuseIfJoined();
    checkName(host, "host name");
    checkName(cluster, "cluster name");
    const ca = await createCa(cluster);
    const hc = await issueHostCertificate(ca, host, addresses);
    const crl = await makeCrl(ca, []);
    this.#prepareDir();
    writeFileAtomic(join(this.dir, "ca.key"), ca.keyPem);
    const members: Members = { version: 1, hosts: { [host]: { serial: hc.serial, addresses, issuedAt: new Date().toISOString() } }, revoked: [] };
    writeFileAtomic(join(this.dir, "members.json"), JSON.stringify(members, null, 2));
    await this.#install({ cluster, host, addresses, caCertPem: ca.certPem, certPem: hc.certPem, keyPem: hc.keyPem, crlPem: crl });
    return this.view();
  }

  /** A bundle for a new host (only where the CA key is). */
  async addHost(name: string, addresses: string[], opts: { days?: number; notAfter?: Date; notBefore?: Date } = {}): Promise<string> {
    const id = this.#requireCa();
    checkName(name, "host name");
    const members = this.#members();
    const existing = members.hosts[name];
    if (existing && !existing.revokedAt)
      throw new AlreadyExistsError(`Host "${name}" is already a member of cluster "${id.cluster}" (remove it first to issue a new certificate)`);
    const hc = await issueHostCertificate(this.#ca(), name, addresses, opts);
    members.hosts[name] = { serial: hc.serial, addresses, issuedAt: new Date().toISOString() };
    writeFileAtomic(join(this.dir, "members.json"), JSON.stringify(members, null, 2));
    return encodeBundle({ cluster: id.cluster, host: name, addresses, caCert: id.caCertPem, cert: hc.certPem, key: hc.keyPem, crl: id.crlPem });
  }

  /** Install a bundle made by `add-host` on the cluster's CA host. */
  async join(bundleText: string): Promise<ClusterView> {
    const b = decodeBundle(bundleText);
    this.#refuseIfJoined();
    const info = await verifyHostCertificate(b.cert, b.caCert);
    if (info.name !== b.host) throw new InvalidArgumentError(`Not a valid host bundle: its certificate is for "${info.name}", the bundle says "${b.host}"`);
    if (!(await keyMatchesCertificate(b.key, b.cert))) throw new InvalidArgumentError("Not a valid host bundle: its key does not belong to its certificate");
    const crl = await verifyCrl(b.crl, b.caCert);
    if (crl.serials.has(info.serial)) throw new InvalidArgumentError(`Host "${b.host}" was removed from cluster "${b.cluster}": its certificate is revoked`);
    this.#prepareDir();
    await this.#install({ cluster: b.cluster, host: b.host, addresses: b.addresses, caCertPem: b.caCert, certPem: b.cert, keyPem: b.key, crlPem: b.crl });
    return this.view();
  }

  /** Revoke a host's certificate (only where the CA key is). Returns the new revocation list. */
  async removeHost(name: string): Promise<string> {
    const id = this.#requireCa();
    if (name === id.host) throw new InvalidArgumentError(`Host "${name}" is this host, the cluster's CA: it cannot remove itself`);
    const members = this.#members();
    const m = members.hosts[name];
    if (!m) throw new NotFoundError(`No host named "${name}" in cluster "${id.cluster}"`);
    if (m.revokedAt) throw new AlreadyExistsError(`Host "${name}" was already removed (at ${m.revokedAt})`);
    const now = new Date();
    m.revokedAt = now.toISOString();
    members.revoked.push({ serial: m.serial, host: name, at: m.revokedAt });
    const crl = await makeCrl(
      this.#ca(),
      members.revoked.map((r) => ({ serial: r.serial, at: new Date(r.at) })),
      // Strictly newer than the list it replaces, whatever the clock did.
      new Date(Math.max(now.getTime(), id.crlTime.getTime() + 1000)),
    );
    writeFileAtomic(join(this.dir, "members.json"), JSON.stringify(members, null, 2));
    await this.adoptCrl(crl);
    return crl;
  }

  /** Keep `crlPem` if the CA signed it and it is newer than ours. Returns whether it was taken. */
  async adoptCrl(crlPem: string): Promise<boolean> {
    const id = this.#require();
    const info = await verifyCrl(crlPem, id.caCertPem);
    if (info.thisUpdate.getTime() <= id.crlTime.getTime()) return false;
    // A newer list never un-revokes: it holds every serial the older one did.
    for (const s of id.revoked) if (!info.serials.has(s)) throw new InvalidArgumentError("The revocation list drops revoked hosts: refused");
    writeFileAtomic(join(this.dir, "crl.pem"), crlPem);
    this.#identity = { ...id, crlPem, revoked: info.serials, crlTime: info.thisUpdate };
    this.#changed();
    return true;
  }

  isRevoked(serial: string): boolean {
    return this.#identity?.revoked.has(serial) ?? false;
  }

  peers(): PeerEntry[] {
    return Object.entries(this.#peersFile().peers).map(([name, p]) => ({ name, url: p.url }));
  }

  addPeer(name: string, url: string): PeerEntry {
    this.#require();
    checkName(name, "peer name");
    const u = PeerUrlSchema.safeParse(url);
    if (!u.success) throw new InvalidArgumentError(`Invalid peer URL "${url}": expected an https URL of a peer's API, like https://10.213.0.11:7443`);
    const f = this.#peersFile();
    if (f.peers[name]) throw new AlreadyExistsError(`A peer named "${name}" exists already (${f.peers[name].url})`);
    f.peers[name] = { url: new URL(url).origin };
    writeFileAtomic(join(this.dir, "peers.json"), JSON.stringify(f, null, 2));
    return { name, url: f.peers[name].url };
  }

  removePeer(name: string): void {
    const f = this.#peersFile();
    if (!f.peers[name]) throw new NotFoundError(`No peer named "${name}"`);
    delete f.peers[name];
    writeFileAtomic(join(this.dir, "peers.json"), JSON.stringify(f, null, 2));
  }

  view(): ClusterView {
    const id = this.#identity;
    if (!id) return { joined: false, peers: this.peers() };
    const members = id.isCa ? this.#members() : null;
    return {
      joined: true,
      cluster: id.cluster,
      host: id.host,
      addresses: id.addresses,
      isCa: id.isCa,
      certificate: { serial: id.cert.serial, notAfter: id.cert.notAfter.toISOString() },
      revocationListTime: id.crlTime.toISOString(),
      revoked: [...id.revoked],
      ...(members ? { hosts: Object.entries(members.hosts).map(([name, m]) => ({ name, ...m })) } : {}),
      peers: this.peers(),
    };
  }

  async #install(p: { cluster: string; host: string; addresses: string[]; caCertPem: string; certPem: string; keyPem: string; crlPem: string }): Promise<void> {
    writeFileAtomic(join(this.dir, "ca.pem"), p.caCertPem, 0o644);
    writeFileAtomic(join(this.dir, "host.pem"), p.certPem, 0o644);
    writeFileAtomic(join(this.dir, "host.key"), p.keyPem);
    writeFileAtomic(join(this.dir, "crl.pem"), p.crlPem);
    // Last: a host is a member once this file is there.
    writeFileAtomic(join(this.dir, "cluster.json"), JSON.stringify({ version: 1, cluster: p.cluster, host: p.host, addresses: p.addresses }, null, 2));
    await this.#load();
    this.#changed();
  }

  async #load(): Promise<void> {
    const m = readIfExists(join(this.dir, "cluster.json"));
    if (m === null) {
      this.#identity = null;
      return;
    }
    const meta = MembershipFile.parse(JSON.parse(m));
    const read = (f: string) => {
      const t = readIfExists(join(this.dir, f));
      if (t === null) throw new PreconditionError(`The cluster directory "${this.dir}" lacks ${f}: join again, or remove cluster.json`);
      return t;
    };
    const caCertPem = read("ca.pem");
    const certPem = read("host.pem");
    const crlPem = read("crl.pem");
    const crl = await verifyCrl(crlPem, caCertPem);
    const cert = new x509.X509Certificate(certPem);
    this.#identity = {
      ...meta,
      caCertPem,
      certPem,
      keyPem: read("host.key"),
      crlPem,
      cert: certInfo(cert),
      revoked: crl.serials,
      crlTime: crl.thisUpdate,
      isCa: readIfExists(join(this.dir, "ca.key")) !== null,
    };
  }

  #prepareDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
  }

  #refuseIfJoined(): void {
    const id = this.#identity;
    if (id) throw new AlreadyExistsError(`This host is already "${id.host}" in cluster "${id.cluster}"`);
  }

  #require(): Identity {
    if (!this.#identity) throw new PreconditionError("This host is not in a cluster: run `autopod cluster init` or `autopod cluster join BUNDLE` first");
    return this.#identity;
  }

  #requireCa(): Identity {
    const id = this.#require();
    if (!id.isCa) throw new PreconditionError(`This host is not the CA of cluster "${id.cluster}": add and remove hosts on the host that ran \`cluster init\``);
    return id;
  }

  #ca(): CaMaterial {
    const keyPem = readIfExists(join(this.dir, "ca.key"));
    if (!keyPem) throw new PreconditionError("The cluster CA key is missing");
    return { certPem: this.#require().caCertPem, keyPem };
  }

  #members(): Members {
    const t = readIfExists(join(this.dir, "members.json"));
    return t === null ? { version: 1, hosts: {}, revoked: [] } : MembersFile.parse(JSON.parse(t));
  }

  #peersFile(): z.infer<typeof PeersFile> {
    const t = readIfExists(join(this.dir, "peers.json"));
    return t === null ? { version: 1, peers: {} } : PeersFile.parse(JSON.parse(t));
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }
}

function checkName(name: string, what: string): void {
  const r = HostNameSchema.safeParse(name);
  if (!r.success) throw new InvalidArgumentError(`Invalid ${what} "${name}": expected 1 to 63 lower-case letters, digits and '-', not at either end`);
}
