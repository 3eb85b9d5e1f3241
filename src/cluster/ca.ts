/**
 * The cluster's certificate authority: it signs every host's certificate and
 * the list of revoked ones. Its key stays on the host that made it.
 */
import { InvalidArgumentError } from "../errors.ts";
import type { X509Certificate, X509Crl } from "@peculiar/x509";
import { generateKeyPair, importPrivateKey, KEY_ALGORITHM, normalSerial, randomSerial, x509 } from "./x509.ts";

const DAY_MS = 86_400_000;
/** Certificates start a little in the past: clocks of hosts differ. */
const BACKDATE_MS = 10 * 60_000;

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface HostCertificate {
  certPem: string;
  keyPem: string;
  serial: string;
  notAfter: Date;
}

export interface RevokedEntry {
  serial: string;
  at: Date;
}

/** A new self-signed CA for a cluster named `cluster`. */
export async function createCa(cluster: string, days = 3650): Promise<CaMaterial> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [`autopod cluster ${cluster}`] }, { O: ["autopod"] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + days * DAY_MS),
    keys: { publicKey: keys.publicKey, privateKey: keys.privateKey },
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: keys.privateKeyPem };
}

/**
 * A certificate for host `name`, good as TLS server and client, with its
 * addresses (IPs or DNS names) as subject alternative names.
 */
export async function issueHostCertificate(
  ca: CaMaterial,
  name: string,
  addresses: readonly string[],
  opts: { days?: number; notBefore?: Date; notAfter?: Date } = {},
): Promise<HostCertificate> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importPrivateKey(ca.keyPem);
  const keys = await generateKeyPair();
  const serial = randomSerial();
  const now = Date.now();
  const notAfter = opts.notAfter ?? new Date(now + (opts.days ?? 825) * DAY_MS);
  const names = [
    { type: "dns" as const, value: name },
    ...addresses.map((a) => (isIp(a) ? { type: "ip" as const, value: a } : { type: "dns" as const, value: a })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [name] }, { O: ["autopod"] }],
    issuer: caCert.subject,
    notBefore: opts.notBefore ?? new Date(now - BACKDATE_MS),
    notAfter,
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: keys.privateKeyPem, serial: normalSerial(serial), notAfter };
}

/**
 * The CA's revocation list (PEM, "X509 CRL" as OpenSSL reads it). Each entry
 * carries a reason: BoringSSL refuses the empty entry-extension sequence the
 * library writes otherwise.
 */
export async function makeCrl(ca: CaMaterial, revoked: readonly RevokedEntry[], thisUpdate = new Date()): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subject,
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + 3650 * DAY_MS),
    entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.at, reason: x509.X509CrlReason.cessationOfOperation })),
    signingKey: await importPrivateKey(ca.keyPem),
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  return x509.PemConverter.encode(crl.rawData, "X509 CRL");
}

export interface CrlInfo {
  thisUpdate: Date;
  serials: Set<string>;
}

/** Read a revocation list and check that the CA signed it; throws otherwise. */
export async function verifyCrl(crlPem: string, caCertPem: string): Promise<CrlInfo> {
  let crl: X509Crl;
  try {
    crl = new x509.X509Crl(x509.PemConverter.decodeFirst(crlPem));
  } catch (e) {
    throw new InvalidArgumentError("The revocation list is not a valid X.509 CRL", { cause: e });
  }
  const caCert = new x509.X509Certificate(caCertPem);
  if (!(await crl.verify({ publicKey: await caCert.publicKey.export() })))
    throw new InvalidArgumentError("The revocation list is not signed by this cluster's CA");
  return { thisUpdate: crl.thisUpdate, serials: new Set(crl.entries.map((e) => normalSerial(e.serialNumber))) };
}

export interface CertInfo {
  subject: string;
  name: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  addresses: string[];
}

/** What a host certificate says, after checking the CA signed it. */
export async function verifyHostCertificate(certPem: string, caCertPem: string, at = new Date()): Promise<CertInfo> {
  let cert: X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    throw new InvalidArgumentError("The host certificate is not a valid X.509 certificate", { cause: e });
  }
  const caCert = new x509.X509Certificate(caCertPem);
  if (!(await cert.verify({ publicKey: caCert, date: at })))
    throw new InvalidArgumentError("The host certificate is not signed by the bundle's CA, or is not valid now");
  return certInfo(cert);
}

export function certInfo(cert: X509Certificate): CertInfo {
  const cn = cert.subjectName.getField("CN")[0] ?? "";
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const addresses = san ? san.names.items.filter((n) => n.type === "ip").map((n) => n.value) : [];
  return { subject: cert.subject, name: cn, serial: normalSerial(cert.serialNumber), notBefore: cert.notBefore, notAfter: cert.notAfter, addresses };
}

/** Does this private key belong to this certificate? (Sign and verify a probe.) */
export async function keyMatchesCertificate(keyPem: string, certPem: string): Promise<boolean> {
  const key = await importPrivateKey(keyPem);
  const pub = await new x509.X509Certificate(certPem).publicKey.export();
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const sig = await crypto.subtle.sign(KEY_ALGORITHM, key, probe);
  return crypto.subtle.verify(KEY_ALGORITHM, pub, sig, probe);
}

export function isIp(a: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(a) || a.includes(":");
}
