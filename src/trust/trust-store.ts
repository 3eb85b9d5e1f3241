/**
 * Which signing keys this host trusts, and as what. Today only its own key
 * ("local"); the cluster adds its members' keys as another level.
 */
import { keyIdOf } from "./signer.ts";

/** How far a signer is trusted: "local" is this host itself. */
export type TrustLevel = "local";

export interface TrustStore {
  /** The trust level of a raw public key, or null for a key it does not know. */
  levelOf(publicKey: Uint8Array): TrustLevel | null;
}

/** Trusts this host's own key, and nothing else. */
export class HostTrustStore implements TrustStore {
  readonly #hostKeyId: string;

  constructor(hostPublicKey: Uint8Array) {
    this.#hostKeyId = keyIdOf(hostPublicKey);
  }

  levelOf(publicKey: Uint8Array): TrustLevel | null {
    return keyIdOf(publicKey) === this.#hostKeyId ? "local" : null;
  }
}
