/**
 * The parent a pushed image's manifest is sent as a delta against: an image
 * of the same pod that the receiver already holds (its previous image, when
 * that was pushed there before). Most of a manifest is page hashes, and the
 * next image of a pod changes only those of the pages that changed.
 */
import type { ImageCatalogue } from "../store/image-catalogue.ts";

/** The most candidates asked about (the peer API's limit is MAX_HELD_QUESTION). */
const CANDIDATES = 16;

/** What choosing a parent needs of a peer (src/api/peer/client.ts's PeerClient). */
export interface PeerImageHolder {
  /** Which of these images the peer holds. */
  heldImages(ids: string[]): Promise<string[]>;
}

/**
 * The image (id and exact manifest bytes) the peer holds that the manifest of
 * `id` is best sent against, or null: the whole manifest goes. The manifest's
 * own parent comes first, then the pod's other images, newest first.
 */
export async function manifestParentFor(
  catalogue: ImageCatalogue,
  peer: PeerImageHolder,
  id: string,
  parent: string | null,
): Promise<{ id: string; manifestBytes: Uint8Array } | null> {
  const candidates = [...new Set([...(parent !== null && catalogue.has(parent) ? [parent] : []), ...catalogue.relativesOf(id, CANDIDATES)])]
    .filter((c) => c !== id)
    .slice(0, CANDIDATES);
  if (candidates.length === 0) return null;
  const held = new Set(await peer.heldImages(candidates));
  const chosen = candidates.find((c) => held.has(c) && catalogue.has(c));
  return chosen === undefined ? null : { id: chosen, manifestBytes: catalogue.manifestBytes(chosen) };
}
