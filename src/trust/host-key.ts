/**
 * This host's signing key: an Ed25519 private key in the state directory
 * (PKCS#8, mode 0600), made on the agent's first start with an atomic write
 * so a crash never leaves half a key.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { PreconditionError } from "../errors.ts";
import { Ed25519Signer } from "./signer.ts";

/** Where the key lives, relative to the state directory. */
export const HOST_KEY_FILE = join("keys", "host-ed25519.pkcs8");

export interface HostKey {
  signer: Ed25519Signer;
  /** True when this start made the key (a fresh host, or the first start after an upgrade). */
  isNew: boolean;
}

/** Load the host key, or make it when there is none. */
export async function loadOrCreateHostKey(stateDir: string): Promise<HostKey> {
  const path = join(stateDir, HOST_KEY_FILE);
  if (existsSync(path)) {
    const st = statSync(path);
    if (!st.isFile()) throw new PreconditionError(`The host key "${path}" is not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new PreconditionError(`The host key "${path}" is readable by others (mode ${(st.mode & 0o777).toString(8)}): make it 0600`);
    try {
      return { signer: await Ed25519Signer.fromPkcs8(new Uint8Array(readFileSync(path))), isNew: false };
    } catch (e) {
      throw new PreconditionError(`The host key "${path}" is not an Ed25519 private key: restore it from a backup, or remove it to make a new identity`, {
        cause: e,
      });
    }
  }
  const { signer, pkcs8 } = await Ed25519Signer.generate();
  mkdirSync(join(stateDir, "keys"), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, pkcs8);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dirFd = openSync(join(stateDir, "keys"), "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return { signer, isNew: true };
}
