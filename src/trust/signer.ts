/**
 * Ed25519 signing and verification through WebCrypto (crypto.subtle): no
 * hand-rolled crypto. A key is named by its id, the hex SHA-256 of its raw
 * 32-byte public key, so a signature can say who made it.
 */
import { createPublicKey, verify } from "node:crypto";
import { sha256, toHex } from "../image/hash.ts";

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** Something that signs: this host's key today, perhaps a cluster member's tomorrow. */
export interface Signer {
  /** Hex SHA-256 of the raw public key. */
  readonly keyId: string;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** The id of a raw Ed25519 public key: hex SHA-256 of its bytes. */
export function keyIdOf(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey));
}

/** A Signer over a WebCrypto Ed25519 key pair. */
export class Ed25519Signer implements Signer {
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  readonly #privateKey: CryptoKey;

  private constructor(privateKey: CryptoKey, publicKey: Uint8Array) {
    this.#privateKey = privateKey;
    this.publicKey = publicKey;
    this.keyId = keyIdOf(publicKey);
  }

  /** A fresh key pair; `pkcs8` is the private key to keep. */
  static async generate(): Promise<{ signer: Ed25519Signer; pkcs8: Uint8Array }> {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as unknown as CryptoKeyPair;
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    return { signer: await Ed25519Signer.fromPkcs8(pkcs8), pkcs8 };
  }

  /** The signer of a stored PKCS#8 private key; throws when the bytes are not an Ed25519 key. */
  static async fromPkcs8(pkcs8: Uint8Array): Promise<Ed25519Signer> {
    // Imported extractable only to derive the public key (WebCrypto has no direct way), then re-imported sealed.
    const extractable = await crypto.subtle.importKey("pkcs8", own(pkcs8), { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", extractable);
    if (typeof jwk.x !== "string") throw new Error("The key has no public part");
    const publicKey = new Uint8Array(Buffer.from(jwk.x, "base64url"));
    if (publicKey.byteLength !== PUBLIC_KEY_BYTES) throw new Error(`The public key is ${publicKey.byteLength} bytes, not ${PUBLIC_KEY_BYTES}`);
    const sealed = await crypto.subtle.importKey("pkcs8", own(pkcs8), { name: "Ed25519" }, false, ["sign"]);
    return new Ed25519Signer(sealed, publicKey);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign("Ed25519", this.#privateKey, own(message)));
  }
}

/** Does `signature` sign `message` under the raw Ed25519 `publicKey`? False for malformed keys or signatures, never a throw. */
/** DER of an Ed25519 SubjectPublicKeyInfo up to the raw 32-byte key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export async function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (publicKey.byteLength !== PUBLIC_KEY_BYTES || signature.byteLength !== SIGNATURE_BYTES) return false;
  try {
    // node:crypto's, at once: WebCrypto's would queue behind whatever the agent's thread pool and event loop are busy with (tens of ms measured mid-restore).
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: "der", type: "spki" });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** A copy on a plain ArrayBuffer, as WebCrypto's types ask. */
function own(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b);
}
