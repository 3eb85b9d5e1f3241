/**
 * The fast layer: each input goes straight to importImage (through trust.ts)
 * against one real ChunkStore and ImageCatalogue in a temp directory, thousands
 * a minute. Oracles: a refusal is a domain error with a clear message and
 * leaves the catalogue as it was; an accepted image decodes again, and is
 * removed so the next input starts from the same store; no import hangs.
 */
import fs from "node:fs";
import path from "node:path";
import { decodeManifest } from "../../src/image/manifest.ts";
import { AutopodError } from "../../src/errors.ts";
import { ChunkStore } from "../../src/store/chunk-store.ts";
import { ImageCatalogue } from "../../src/store/image-catalogue.ts";
import { importForFuzz } from "./trust.ts";

export interface Finding {
  layer: "in-process" | "agent";
  kind: string;
  message: string;
  /** Row of issue 16's table when this is a known hole. */
  knownRow?: number;
  /** Id of a pending finding (known.ts PENDING) when this is one. */
  pending?: string;
  ops?: string[];
  input?: string;
}

export type ImportOutcome = { outcome: "refused"; message: string; name: string } | { outcome: "imported"; id: string; wasPresent: boolean };

const HANG_MS = 20_000;

async function* pieces(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, Math.min(bytes.byteLength, i + size));
}

export class InProcessTarget {
  readonly store: ChunkStore;
  readonly catalogue: ImageCatalogue;
  #seedIds: Set<string>;
  #n = 0;

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.store = ChunkStore.open(path.join(dir, "store"), { isDurable: false });
    this.catalogue = new ImageCatalogue(this.store);
    this.#seedIds = new Set();
  }

  /** Import a seed once and keep it: later inputs dedup against its chunks, as on a real host. */
  async addSeed(bytes: Uint8Array): Promise<string> {
    const r = await importForFuzz(this.catalogue, pieces(bytes, 1 << 20));
    this.#seedIds.add(r.id);
    return r.id;
  }

  /** One input: its outcome, and what broke an oracle. */
  async run(bytes: Uint8Array): Promise<{ result: ImportOutcome; findings: Omit<Finding, "layer">[] }> {
    const findings: Omit<Finding, "layer">[] = [];
    const before = this.#imageCount();
    let result: ImportOutcome;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      // Odd piece sizes exercise the reader's buffering across frame boundaries.
      const size = [1 << 20, 4096, 37, 65_537][this.#n++ % 4]!;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HangError(`The import took more than ${HANG_MS} ms`)), HANG_MS);
      });
      const r = await Promise.race([importForFuzz(this.catalogue, pieces(bytes, size)), hang]);
      result = { outcome: "imported", id: r.id, wasPresent: r.wasPresent };
    } catch (e) {
      const err = e as Error;
      result = { outcome: "refused", message: String(err?.message), name: String(err?.name) };
      if (e instanceof HangError) findings.push({ kind: "hang", message: err.message });
      else if (!(e instanceof AutopodError))
        findings.push({ kind: "crash", message: `${err?.name}: ${err?.message} at ${String(err?.stack).split("\n")[1]?.trim()}` });
      else if (!unclearMessage(err.message)) {
        // fine: a domain error with a message
      } else findings.push({ kind: "unclear-error", message: `${err.name}: ${JSON.stringify(err.message).slice(0, 300)}` });
      if (this.#imageCount() !== before) findings.push({ kind: "store-changed", message: "A refused import changed the catalogue" });
    } finally {
      clearTimeout(timer);
    }
    if (result.outcome === "imported") {
      try {
        decodeManifest(this.catalogue.manifestBytes(result.id));
      } catch (e) {
        findings.push({ kind: "stored-invalid", message: `An imported manifest does not decode again: ${(e as Error).message}` });
      }
      if (!this.#seedIds.has(result.id)) this.catalogue.remove(result.id);
    }
    return { result, findings };
  }

  #imageCount(): number {
    return this.store.db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM images").get()!.n;
  }

  /** gc, then every stored chunk read back against its hash. */
  check(): Omit<Finding, "layer">[] {
    this.catalogue.gc();
    const v = this.store.verifyAll();
    return v.corrupt.length ? [{ kind: "store-corrupt", message: `${v.corrupt.length} corrupt chunks after gc: ${v.corrupt.slice(0, 3).join(", ")}` }] : [];
  }

  close(): void {
    this.store.close();
  }
}

class HangError extends Error {
  override name = "HangError";
}

/** A message a person could not act on: empty, a stack trace, or an object's default rendering. */
export function unclearMessage(m: string): boolean {
  return m.trim() === "" || /\n\s+at /.test(m) || /\[object Object\]|undefined is not|is not a function|Cannot read propert/.test(m) || m.length > 4000;
}
