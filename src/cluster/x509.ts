/**
 * The X.509 library (@peculiar/x509 over WebCrypto), set up once. Every
 * certificate, key and revocation list of the cluster goes through it: no
 * ASN.1 is written by hand here.
 */
import "reflect-metadata";
import type * as X509 from "@peculiar/x509";

/**
 * Required after the Reflect polyfill above: the library's dependency
 * (tsyringe) checks for it as it loads, and in the compiled binary a static
 * import would be evaluated first.
 */
export const x509: typeof X509 = require("@peculiar/x509");
x509.cryptoProvider.set(crypto);

/** ECDSA P-256 with SHA-256: what every cluster key and signature uses. */
export const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface KeyPairPem {
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  privateKeyPem: string;
}

export async function generateKeyPair(): Promise<KeyPairPem> {
  const keys = (await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { publicKey: keys.publicKey, privateKey: keys.privateKey, privateKeyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") };
}

export async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]);
}

/** A random positive serial number (16 bytes, hex), as CAs are asked to use. */
export function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0]! & 0x7f) | 0x10;
  return Buffer.from(b).toString("hex");
}

/** Serial numbers compared as the library and Bun print them: lower-case hex, no leading zeros. */
export function normalSerial(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^0-9a-f]/g, "")
    .replace(/^0+(?=.)/, "");
}
