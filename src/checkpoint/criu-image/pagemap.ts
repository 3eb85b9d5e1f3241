/**
 * CRIU's pagemap files (images/pagemap.proto): a pagemap_head naming the
 * pages-N.img that holds the memory, then one pagemap_entry per run of pages
 * (vaddr, nr_pages, flags; CRIU 4 writes nr_pages as the uint64 field 5 and
 * 0 in the old uint32 field 2, compat_nr_pages). CRIU's restorer trusts them: an unaligned vaddr
 * made it loop for good (fuzz finding P1), so every entry is checked before
 * CRIU runs: page-aligned, at least one page, in increasing order without
 * overlap, inside the address space, and the present pages exactly fill the
 * pages file they name.
 */
import { CriuImageError } from "./errors.ts";
import { MAGIC, readMessages } from "./image-file.ts";

/** x86-64's page size: the only architecture autopod restores on. */
export const PAGE_SIZE = 4096;
/** pmap.flags: the page is in the parent image, lazy, or present in this image's pages file. */
export const PE_PARENT = 1;
export const PE_LAZY = 2;
export const PE_PRESENT = 4;
/** The top of x86-64's user address space (5-level paging): no pagemap entry reaches past it. */
const TASK_SIZE_MAX = 1n << 56n;
/** Pages one entry may claim: 2^36 of them is 256 TiB, far past any pod. */
const MAX_PAGES = 2 ** 36;
export const PAGEMAP_FILE = /^pagemap-(\d+|shmem-\d+)\.img$/;

export interface PagemapRecord {
  pagesId: number;
  entries: Array<{ vaddr: bigint; nrPages: number; flags: number }>;
}

export function decodePagemap(name: string, bytes: Uint8Array): PagemapRecord {
  const all = readMessages(name, bytes, MAGIC.pagemap);
  if (all.length === 0) throw new CriuImageError(`${name} has no pagemap head`);
  const pagesId = all[0]!.requireUint32(1, `${name} head`);
  const entries = all.slice(1).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    const vaddr = m.uint64(1, what);
    if (vaddr === undefined) throw new CriuImageError(`${what}: required field 1 is missing`);
    const compat = m.requireUint32(2, what);
    const wide = m.uint64(5, what);
    if (wide !== undefined && wide > BigInt(MAX_PAGES)) throw new CriuImageError(`${what} claims ${wide} pages, more than ${MAX_PAGES}`);
    const nrPages = wide !== undefined ? Number(wide) : compat;
    const inParent = m.bool(3, what) ?? false;
    // CRIU's own compatibility rule (criu/pagemap.c): no flags means present, or in the parent.
    const flags = m.uint32(4, what) ?? (inParent ? PE_PARENT : PE_PRESENT);
    return { vaddr, nrPages, flags };
  });
  return { pagesId, entries };
}

/**
 * Check one pagemap file and return the pages file it names and how many
 * pages it says are there. Autopod dumps without a parent image, and without
 * lazy pages but for a post-copy migration's image (`allowLazy`), so every
 * other entry must be present in this image.
 */
export function checkPagemap(name: string, bytes: Uint8Array, allowLazy = false): { pagesFile: string; pages: number } {
  const map = decodePagemap(name, bytes);
  let end = 0n;
  let pages = 0;
  for (const [i, e] of map.entries.entries()) {
    const what = `${name} entry ${i + 1} (vaddr 0x${e.vaddr.toString(16)}, ${e.nrPages} pages)`;
    if (e.vaddr % BigInt(PAGE_SIZE) !== 0n) throw new CriuImageError(`${what} is not page-aligned`);
    if (e.nrPages === 0) throw new CriuImageError(`${what} covers no page`);
    if (e.vaddr < end) throw new CriuImageError(`${what} overlaps or comes before the entry ahead of it (which ends at 0x${end.toString(16)})`);
    end = e.vaddr + BigInt(e.nrPages) * BigInt(PAGE_SIZE);
    if (end > TASK_SIZE_MAX) throw new CriuImageError(`${what} ends past the user address space`);
    // Post-copy: lazy only, the pages stay at the source until fetched; not in this image's pages file.
    if (allowLazy && e.flags === PE_LAZY) continue;
    // Present (lazy or not: PE_LAZY marks pages a lazy restore may fetch late, and they are in the file too); never in a parent image.
    if ((e.flags & PE_PRESENT) === 0 || (e.flags & ~(PE_PRESENT | PE_LAZY)) !== 0) {
      throw new CriuImageError(`${what} has flags 0x${e.flags.toString(16)}; autopod's images hold every page themselves (present, not in a parent)`);
    }
    pages += e.nrPages;
  }
  return { pagesFile: `pages-${map.pagesId}.img`, pages };
}
