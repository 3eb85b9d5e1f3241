export { UntrustedImageError } from "./errors.ts";
export { HOST_KEY_FILE, loadOrCreateHostKey } from "./host-key.ts";
export type { HostKey } from "./host-key.ts";
export {
  SIGNATURE_BLOCK_BYTES,
  decodeSignatureBlock,
  encodeSignatureBlock,
  imageSigningMessage,
  isValidImageSignature,
  signImage,
  signerIdOf,
} from "./image-signature.ts";
export type { ImageSignature } from "./image-signature.ts";
export { ImageTrust, LEGACY_LOCAL_LIST } from "./image-trust.ts";
export type { ImageOrigin, Provenance } from "./image-trust.ts";
export { Ed25519Signer, keyIdOf, verifyEd25519 } from "./signer.ts";
export type { Signer } from "./signer.ts";
export { HostTrustStore } from "./trust-store.ts";
export type { TrustLevel, TrustStore } from "./trust-store.ts";
