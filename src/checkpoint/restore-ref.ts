/**
 * What `autopod restore REF` means: REF is an image id, a unique prefix of
 * one, or a pod name (that pod's latest image), as `podman container restore
 * NAME` takes a container. A string that is both is refused, naming both
 * images, for the caller to choose with --image.
 */
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { POD_NAME } from "../pods/pod.ts";
import { quote } from "../quote.ts";
import type { ImageCatalogue } from "../store/image-catalogue.ts";

const IMAGE_REF = /^[0-9a-f]{4,64}$/;

/** The image id REF stands for. */
export function resolveRestoreRef(catalogue: Pick<ImageCatalogue, "idsStartingWith" | "latestOf">, ref: string): string {
  const isIdLike = IMAGE_REF.test(ref);
  const isNameLike = POD_NAME.test(ref);
  if (!isIdLike && !isNameLike) throw new InvalidArgumentError(`${quote(ref)} is neither an image id (4 to 64 hex digits) nor a pod name`);
  const ofPod = isNameLike ? catalogue.latestOf(ref) : null;
  const byId = isIdLike ? catalogue.idsStartingWith(ref) : [];
  if (ofPod !== null && byId.length > 0 && !(byId.length === 1 && byId[0] === ofPod)) {
    const ids = byId.map((m) => m.slice(0, 12)).join(", ");
    throw new InvalidArgumentError(
      `${quote(ref)} is both pod "${ref}" (its latest image is ${ofPod.slice(0, 12)}) and the start of image id${byId.length > 1 ? "s" : ""} ${ids}: ` +
        `say which with --image ID`,
    );
  }
  if (ofPod !== null) return ofPod;
  if (byId.length > 1) throw new InvalidArgumentError(`Image id "${ref}" is ambiguous: ${byId.map((m) => m.slice(0, 12)).join(", ")}`);
  if (byId.length === 1) return byId[0]!;
  if (!isIdLike) throw new NotFoundError(`No image of a pod named ${quote(ref)}: see \`autopod images\``);
  throw new NotFoundError(
    `No image ${quote(ref)}${isNameLike ? " (no image id starts with it, and no pod of that name has one)" : ""}: see \`autopod images\``,
  );
}
