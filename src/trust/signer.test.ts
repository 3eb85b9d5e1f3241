import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST_KEY_FILE, loadOrCreateHostKey } from "./host-key.ts";
import { decodeSignatureBlock, encodeSignatureBlock, isValidImageSignature, signImage } from "./image-signature.ts";
import { Ed25519Signer, keyIdOf, verifyEd25519 } from "./signer.ts";

const ID = "ab".repeat(32);
const OTHER_ID = "cd".repeat(32);

describe("Ed25519 signer", () => {
  test("a signature verifies under its key only, and only for its message", async () => {
    const { signer } = await Ed25519Signer.generate();
    const { signer: other } = await Ed25519Signer.generate();
    const msg = new TextEncoder().encode("hello");
    const sig = await signer.sign(msg);
    expect(sig.byteLength).toBe(64);
    expect(await verifyEd25519(signer.publicKey, msg, sig)).toBe(true);
    expect(await verifyEd25519(other.publicKey, msg, sig)).toBe(false);
    expect(await verifyEd25519(signer.publicKey, new TextEncoder().encode("hellp"), sig)).toBe(false);
    const flipped = sig.slice();
    flipped[10]! ^= 1;
    expect(await verifyEd25519(signer.publicKey, msg, flipped)).toBe(false);
  });

  test("malformed keys and signatures are false, never a throw", async () => {
    const { signer } = await Ed25519Signer.generate();
    const msg = new Uint8Array(3);
    const sig = await signer.sign(msg);
    expect(await verifyEd25519(new Uint8Array(31), msg, sig)).toBe(false);
    expect(await verifyEd25519(new Uint8Array(32), msg, sig)).toBe(false);
    expect(await verifyEd25519(signer.publicKey, msg, sig.subarray(0, 63))).toBe(false);
  });

  test("a key reloaded from PKCS#8 is the same key", async () => {
    const { signer, pkcs8 } = await Ed25519Signer.generate();
    const again = await Ed25519Signer.fromPkcs8(pkcs8);
    expect(again.keyId).toBe(signer.keyId);
    expect(again.keyId).toBe(keyIdOf(signer.publicKey));
    expect(await verifyEd25519(signer.publicKey, new Uint8Array(1), await again.sign(new Uint8Array(1)))).toBe(true);
  });
});

describe("image signatures", () => {
  test("sign the image id, in a domain of their own; the export block round-trips", async () => {
    const { signer } = await Ed25519Signer.generate();
    const sig = await signImage(signer, ID);
    expect(await isValidImageSignature(sig, ID)).toBe(true);
    expect(await isValidImageSignature(sig, OTHER_ID)).toBe(false);
    // The bare id is not the signed message: a signature made for another purpose does not pass.
    const bare = await signer.sign(Buffer.from(ID, "hex"));
    expect(await isValidImageSignature({ publicKey: signer.publicKey, signature: bare }, ID)).toBe(false);
    const back = decodeSignatureBlock(encodeSignatureBlock(sig));
    expect(await isValidImageSignature(back, ID)).toBe(true);
    expect(() => decodeSignatureBlock(new Uint8Array(95))).toThrow("96 bytes");
  });
});

describe("host key", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "hostkey-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("is made once, mode 0600, and is the same key after a restart", async () => {
    const first = await loadOrCreateHostKey(dir);
    expect(first.isNew).toBe(true);
    expect(statSync(join(dir, HOST_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "keys")).mode & 0o777).toBe(0o700);
    const second = await loadOrCreateHostKey(dir);
    expect(second.isNew).toBe(false);
    expect(second.signer.keyId).toBe(first.signer.keyId);
  });

  test("a key others can read, or that is not a key, is refused with what to do", async () => {
    await loadOrCreateHostKey(dir);
    const path = join(dir, HOST_KEY_FILE);
    chmodSync(path, 0o644);
    await expect(loadOrCreateHostKey(dir)).rejects.toThrow(`The host key "${path}" is readable by others (mode 644): make it 0600`);
    chmodSync(path, 0o600);
    writeFileSync(path, readFileSync(path).subarray(0, 20));
    await expect(loadOrCreateHostKey(dir)).rejects.toThrow("is not an Ed25519 private key");
  });
});
