/**
 * Where each image came from, proven by signatures rather than by a list a
 * pod could edit. Every image this host makes is signed with its key; an
 * import is admitted when a trusted key signed it, or when the operator says
 * --trust (and it is then an image from elsewhere, checked as such).
 *
 * The table (in the store's database, beside the catalogue) only holds
 * signatures: "local" is re-proven from the signature each time it matters,
 * so a row written by anyone but this agent cannot make an image local.
 */
import type { Database } from "bun:sqlite";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { UntrustedImageError } from "./errors.ts";
import { type ImageSignature, isValidImageSignature, signerIdOf, signImage } from "./image-signature.ts";
import type { Signer } from "./signer.ts";
import type { TrustStore } from "./trust-store.ts";

/** What `autopod images` shows: made here (or by a key this host trusts as itself), imported with --trust, or neither. */
export type ImageOrigin = "local" | "imported" | "unsigned";

export interface Provenance {
  origin: ImageOrigin;
  /** Key id of the signature's key, when the image carries one. */
  signer: string | null;
}

/** The list of local image ids agents before signatures kept in the state directory. */
export const LEGACY_LOCAL_LIST = "images.local";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS image_provenance(
  id TEXT PRIMARY KEY,
  origin TEXT NOT NULL CHECK (origin IN ('local', 'imported')),
  public_key BLOB,
  signature BLOB,
  recorded_at TEXT NOT NULL
);
`;

type Row = { origin: "local" | "imported"; public_key: Uint8Array | null; signature: Uint8Array | null };

export class ImageTrust {
  readonly #db: Database;
  readonly #signer: Signer;
  readonly #trusted: TrustStore;
  /** Verified signatures, by image id and signature bytes (a verify costs about 0.1 ms; listing many images adds up). */
  readonly #verified = new Map<string, boolean>();

  constructor(db: Database, signer: Signer, trusted: TrustStore) {
    this.#db = db;
    this.#signer = signer;
    this.#trusted = trusted;
    db.exec(SCHEMA);
  }

  /** This host's key id. */
  get hostKeyId(): string {
    return this.#signer.keyId;
  }

  /** Sign an image this host made (before it commits: the signature goes in with it, see recordLocal). */
  signLocal(id: string): Promise<ImageSignature> {
    return signImage(this.#signer, id);
  }

  /** Record a signature of this host; synchronous, so it runs inside the image's commit transaction. */
  recordLocal(id: string, sig: ImageSignature): void {
    this.#put(id, "local", sig);
  }

  /**
   * Decide whether an export may come in, before any of its chunks is read:
   * returns the step that records its provenance (run it in the import's
   * commit), or throws UntrustedImageError.
   */
  async admitImport(id: string, sig: ImageSignature | null, opts: { trust: boolean }): Promise<() => void> {
    const short = id.slice(0, 12);
    if (sig !== null && !(await isValidImageSignature(sig, id))) {
      throw new UntrustedImageError(
        `Cannot import image ${short}: its signature (key ${signerIdOf(sig).slice(0, 16)}) does not match its manifest: the file was altered after it was signed`,
      );
    }
    if (sig !== null && this.#trusted.levelOf(sig.publicKey) === "local") return () => this.#put(id, "local", sig);
    if (await this.isLocal(id)) return () => {}; // the very bytes this host signed already
    if (opts.trust) return () => this.#put(id, "imported", sig);
    const who = sig === null ? "it is not signed" : `it is signed by key ${signerIdOf(sig).slice(0, 16)}, which this host does not trust`;
    throw new UntrustedImageError(
      `Cannot import image ${short}: ${who}. If you trust where this file came from, import it with --trust: it is then restored as an image from another host, with every check that brings`,
    );
  }

  /** The image's origin, its local signature verified now. */
  async provenanceOf(id: string): Promise<Provenance> {
    const row = this.#row(id);
    if (row === null) return { origin: "unsigned", signer: null };
    const sig = signatureOfRow(row);
    const signer = sig ? signerIdOf(sig) : null;
    if (row.origin === "local") return { origin: (await this.#isLocalRow(id, row)) ? "local" : "unsigned", signer };
    return { origin: "imported", signer };
  }

  /** Made by this host: a signature of a key this host trusts as itself, checked now. */
  async isLocal(id: string): Promise<boolean> {
    const row = this.#row(id);
    return row !== null && (await this.#isLocalRow(id, row));
  }

  /** The signature an export carries: this host's for its own images, the original signer's for a trusted import. */
  signatureOf(id: string): ImageSignature | null {
    const row = this.#row(id);
    return row === null ? null : signatureOfRow(row);
  }

  /** Forget an image's provenance (it was removed). */
  forget(id: string): void {
    this.#db.query<unknown, [string]>("DELETE FROM image_provenance WHERE id = ?").run(id);
  }

  /**
   * Upgrade from the list of local images agents kept before signatures: on
   * the start that made this host's key, every listed image still in the
   * catalogue is signed as local. Any later list is ignored (a pod or a file
   * written since cannot add trust); the file is renamed aside either way.
   */
  async adoptLegacyList(stateDir: string, opts: { isNewKey: boolean; has: (id: string) => boolean }): Promise<{ adopted: number; ignored: number }> {
    const path = join(stateDir, LEGACY_LOCAL_LIST);
    if (!existsSync(path)) return { adopted: 0, ignored: 0 };
    const ids = [...new Set(readFileSync(path, "utf8").split("\n"))].filter((l) => /^[0-9a-f]{64}$/.test(l) && opts.has(l));
    let adopted = 0;
    if (opts.isNewKey) {
      for (const id of ids) {
        if (await this.isLocal(id)) continue;
        this.recordLocal(id, await this.signLocal(id));
        adopted++;
      }
    }
    renameSync(path, `${path}.${opts.isNewKey ? "adopted" : "ignored"}`);
    return { adopted, ignored: opts.isNewKey ? 0 : ids.length };
  }

  async #isLocalRow(id: string, row: Row): Promise<boolean> {
    const sig = signatureOfRow(row);
    if (sig === null || this.#trusted.levelOf(sig.publicKey) !== "local") return false;
    const key = `${id}:${Buffer.from(sig.signature).toString("hex")}`;
    let ok = this.#verified.get(key);
    if (ok === undefined) {
      ok = await isValidImageSignature(sig, id);
      this.#verified.set(key, ok);
    }
    return ok;
  }

  #row(id: string): Row | null {
    return this.#db.query<Row, [string]>("SELECT origin, public_key, signature FROM image_provenance WHERE id = ?").get(id);
  }

  #put(id: string, origin: "local" | "imported", sig: ImageSignature | null): void {
    this.#db
      .query<unknown, [string, string, Uint8Array | null, Uint8Array | null, string]>(
        "INSERT OR REPLACE INTO image_provenance(id, origin, public_key, signature, recorded_at) VALUES (?, ?, ?, ?, ?)",
      )
      .run(id, origin, sig?.publicKey ?? null, sig?.signature ?? null, new Date().toISOString());
  }
}

function signatureOfRow(row: Row): ImageSignature | null {
  if (row.public_key === null || row.signature === null) return null;
  return { publicKey: new Uint8Array(row.public_key), signature: new Uint8Array(row.signature) };
}
