/**
 * An image's signature: Ed25519 over a domain-separated message naming the
 * image id (the SHA-256 of the manifest's exact bytes), so it covers every
 * byte of the manifest and, through its chunk hashes, every chunk.
 */
import { HASH_BYTES } from "../image/hash.ts";
import { keyIdOf, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, type Signer, verifyEd25519 } from "./signer.ts";

export interface ImageSignature {
  /** Raw Ed25519 public key of the signer. */
  publicKey: Uint8Array;
  signature: Uint8Array;
}

/** Bytes of a signature block in an export: public key, then signature. */
export const SIGNATURE_BLOCK_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES;

const DOMAIN = new TextEncoder().encode("autopod image manifest v1\0");

/** The signed message: a fixed domain tag, then the 32-byte image id. */
export function imageSigningMessage(imageId: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(imageId)) throw new TypeError(`"${imageId.slice(0, 80)}" is not an image id`);
  const m = new Uint8Array(DOMAIN.byteLength + HASH_BYTES);
  m.set(DOMAIN);
  m.set(Buffer.from(imageId, "hex"), DOMAIN.byteLength);
  return m;
}

export async function signImage(signer: Signer, imageId: string): Promise<ImageSignature> {
  return { publicKey: signer.publicKey, signature: await signer.sign(imageSigningMessage(imageId)) };
}

/** Does the signature sign this image id under its own public key? (Whether that key is trusted is the TrustStore's question.) */
export function isValidImageSignature(sig: ImageSignature, imageId: string): Promise<boolean> {
  return verifyEd25519(sig.publicKey, imageSigningMessage(imageId), sig.signature);
}

export function signerIdOf(sig: ImageSignature): string {
  return keyIdOf(sig.publicKey);
}

export function encodeSignatureBlock(sig: ImageSignature): Uint8Array {
  const b = new Uint8Array(SIGNATURE_BLOCK_BYTES);
  b.set(sig.publicKey);
  b.set(sig.signature, PUBLIC_KEY_BYTES);
  return b;
}

export function decodeSignatureBlock(b: Uint8Array): ImageSignature {
  if (b.byteLength !== SIGNATURE_BLOCK_BYTES) throw new TypeError(`A signature block is ${SIGNATURE_BLOCK_BYTES} bytes, not ${b.byteLength}`);
  return { publicKey: b.slice(0, PUBLIC_KEY_BYTES), signature: b.slice(PUBLIC_KEY_BYTES) };
}
