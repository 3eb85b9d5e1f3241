import { PreconditionError } from "../errors.ts";

/** An image whose signer this host does not trust, imported without --trust: nothing was stored. */
export class UntrustedImageError extends PreconditionError {
  override name = "UntrustedImageError";
}
