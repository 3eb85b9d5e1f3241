import { Database } from "bun:sqlite";
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UntrustedImageError } from "./errors.ts";
import { signImage } from "./image-signature.ts";
import { ImageTrust, LEGACY_LOCAL_LIST } from "./image-trust.ts";
import { Ed25519Signer } from "./signer.ts";
import { HostTrustStore } from "./trust-store.ts";

const A = "aa".repeat(32);
const B = "bb".repeat(32);

let db: Database;
let host: Ed25519Signer;
let stranger: Ed25519Signer;
let trust: ImageTrust;

beforeEach(async () => {
  db = new Database(":memory:");
  host = (await Ed25519Signer.generate()).signer;
  stranger = (await Ed25519Signer.generate()).signer;
  trust = new ImageTrust(db, host, new HostTrustStore(host.publicKey));
});
afterEach(() => db.close());

describe("ImageTrust", () => {
  test("an image this host signed is local, and its signature is what an export carries", async () => {
    const sig = await trust.signLocal(A);
    trust.recordLocal(A, sig);
    expect(await trust.isLocal(A)).toBe(true);
    expect(await trust.provenanceOf(A)).toEqual({ origin: "local", signer: host.keyId });
    expect(trust.signatureOf(A)).toEqual(sig);
    expect(await trust.isLocal(B)).toBe(false);
    expect(await trust.provenanceOf(B)).toEqual({ origin: "unsigned", signer: null });
  });

  test("an import signed by this host is admitted as local, without --trust", async () => {
    const record = await trust.admitImport(A, await signImage(host, A), { trust: false });
    record();
    expect(await trust.isLocal(A)).toBe(true);
  });

  test("an import signed by another key, or unsigned, is refused without --trust and foreign with it", async () => {
    const foreign = await signImage(stranger, A);
    await expect(trust.admitImport(A, foreign, { trust: false })).rejects.toThrow(UntrustedImageError);
    await expect(trust.admitImport(A, foreign, { trust: false })).rejects.toThrow(
      `it is signed by key ${stranger.keyId.slice(0, 16)}, which this host does not trust. If you trust where this file came from, import it with --trust`,
    );
    await expect(trust.admitImport(B, null, { trust: false })).rejects.toThrow(`Cannot import image ${B.slice(0, 12)}: it is not signed.`);
    (await trust.admitImport(A, foreign, { trust: true }))();
    (await trust.admitImport(B, null, { trust: true }))();
    expect(await trust.provenanceOf(A)).toEqual({ origin: "imported", signer: stranger.keyId });
    expect(await trust.provenanceOf(B)).toEqual({ origin: "imported", signer: null });
    expect(await trust.isLocal(A)).toBe(false);
    expect(trust.signatureOf(A)).toEqual(foreign);
  });

  test("a signature that does not match the image is refused even with --trust", async () => {
    const forA = await signImage(host, A);
    await expect(trust.admitImport(B, forA, { trust: true })).rejects.toThrow("does not match its manifest: the file was altered after it was signed");
  });

  test("a row written into the database by anyone else cannot make an image local", async () => {
    const put = db.query("INSERT OR REPLACE INTO image_provenance(id, origin, public_key, signature, recorded_at) VALUES (?, 'local', ?, ?, 'x')");
    // No signature, a stranger's signature, this host's key with a signature of another image, garbage.
    put.run(A, null, null);
    expect(await trust.isLocal(A)).toBe(false);
    const s = await signImage(stranger, A);
    put.run(A, s.publicKey, s.signature);
    expect(await trust.isLocal(A)).toBe(false);
    put.run(A, host.publicKey, (await signImage(host, B)).signature);
    expect(await trust.isLocal(A)).toBe(false);
    expect(await trust.provenanceOf(A)).toEqual({ origin: "unsigned", signer: host.keyId });
    put.run(A, host.publicKey, new Uint8Array(64));
    expect(await trust.isLocal(A)).toBe(false);
  });

  describe("the list of local images of agents before signatures", () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), "legacy-"));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    test("is adopted (signed) on the start that made the key, for images still in the catalogue", async () => {
      writeFileSync(join(dir, LEGACY_LOCAL_LIST), `${A}\n${B}\nnot-an-id\n${A}\n`);
      const r = await trust.adoptLegacyList(dir, { isNewKey: true, has: (id) => id === A });
      expect(r).toEqual({ adopted: 1, ignored: 0 });
      expect(await trust.isLocal(A)).toBe(true);
      expect(await trust.isLocal(B)).toBe(false);
      expect(existsSync(join(dir, LEGACY_LOCAL_LIST))).toBe(false);
      expect(existsSync(join(dir, `${LEGACY_LOCAL_LIST}.adopted`))).toBe(true);
    });

    test("is ignored when written after the key existed (a pod or a file cannot add trust)", async () => {
      writeFileSync(join(dir, LEGACY_LOCAL_LIST), `${A}\n`);
      const r = await trust.adoptLegacyList(dir, { isNewKey: false, has: () => true });
      expect(r).toEqual({ adopted: 0, ignored: 1 });
      expect(await trust.isLocal(A)).toBe(false);
      expect(existsSync(join(dir, `${LEGACY_LOCAL_LIST}.ignored`))).toBe(true);
    });
  });
});
