/**
 * The CRIU this binary carries (build.ts embeds .cache/criu-bundle, made by `scripts/install-criu.sh --bundle`), and
 * putting it on a host: `autopod criu install`, install.sh and doctor's fix line use installEmbeddedCriu().
 *
 * Layout under the prefix (default /usr/local/lib/autopod/criu):
 *   <id>/bin/criu, <id>/lib/*.so.*   one bundle, <id> the first 16 hex digits of its SHA-256
 *   current -> <id>                   the one in use, swapped by renaming a new symlink over it
 * The criu finds its libraries through its $ORIGIN run path; only glibc (>= Debian 12's 2.36) comes from the host.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { InvalidArgumentError, PreconditionError } from "../../errors.ts";
import { run } from "./exec.ts";
import { parseCriuGitId, parseCriuVersion } from "./criu.ts";
import { type BundleHeader, sha256Hex, unpackBundle } from "./criu-bundle-format.ts";

declare const AUTOPOD_CRIU_BUNDLE: string | undefined;

export const DEFAULT_CRIU_PREFIX = "/usr/local/lib/autopod/criu";
/** Where build.ts leaves the packed bundle, which runs from the source tree use. */
const SOURCE_TREE_BUNDLE = resolve(import.meta.dir, "../../../.cache/criu-bundle.zst");

let blobCache: Promise<Uint8Array | null> | undefined;

/** The packed bundle this binary carries (the embedded file AUTOPOD_CRIU_BUNDLE names); null when it was built without one. */
export function embeddedCriuBlob(): Promise<Uint8Array | null> {
  blobCache ??= (async () => {
    if (typeof AUTOPOD_CRIU_BUNDLE === "string") {
      if (AUTOPOD_CRIU_BUNDLE === "") return null;
      const file = Bun.embeddedFiles.find((f) => (f as Blob & { name?: string }).name === AUTOPOD_CRIU_BUNDLE);
      return file ? new Uint8Array(await file.arrayBuffer()) : null;
    }
    return existsSync(SOURCE_TREE_BUNDLE) ? new Uint8Array(readFileSync(SOURCE_TREE_BUNDLE)) : null;
  })();
  return blobCache;
}

export interface EmbeddedCriuInfo {
  /** First 16 hex digits of the packed bundle's SHA-256: its directory under the prefix. */
  id: string;
  criuVersion: string;
  gitId: string;
  /** Packed (compressed) size in the binary, and unpacked size on disk. */
  packedBytes: number;
  unpackedBytes: number;
}

/** What the carried bundle holds; null when the binary carries none. */
export async function embeddedCriuInfo(): Promise<EmbeddedCriuInfo | null> {
  const blob = await embeddedCriuBlob();
  if (!blob) return null;
  const { header } = unpackBundle(blob);
  return {
    id: sha256Hex(blob).slice(0, 16),
    criuVersion: header.criuVersion,
    gitId: header.gitId,
    packedBytes: blob.length,
    unpackedBytes: header.files.reduce((n, f) => n + f.size, 0),
  };
}

/** The installed carried criu under the prefix (through "current"), or null when none is installed. */
export function installedEmbeddedCriu(prefix = DEFAULT_CRIU_PREFIX): string | null {
  const path = join(prefix, "current/bin/criu");
  return existsSync(path) ? path : null;
}

export interface CriuInstallResult {
  /** The criu to run: <prefix>/current/bin/criu. */
  path: string;
  /** The bundle's own directory, <prefix>/<id>. */
  dir: string;
  id: string;
  criuVersion: string;
  gitId: string;
  /** False when this bundle was already installed, whole, and current. */
  changed: boolean;
}

/**
 * Put the carried CRIU under `prefix` and make it current: unpack into a temporary directory beside it, check every
 * file's SHA-256 as read back from disk, check that its criu runs and prints the bundle's version and GitID, then
 * rename the directory into place and swap the "current" symlink. A failure leaves what was installed before as it was.
 * Idempotent. `blob` replaces the carried bundle (tests; null: a binary that carries none).
 */
export async function installEmbeddedCriu(prefix = DEFAULT_CRIU_PREFIX, opts: { blob?: Uint8Array | null } = {}): Promise<CriuInstallResult> {
  if (!prefix.startsWith("/")) throw new InvalidArgumentError(`The CRIU prefix "${prefix}" is not an absolute path`);
  const blob = opts.blob !== undefined ? opts.blob : await embeddedCriuBlob();
  if (!blob) {
    throw new PreconditionError(
      "This autopod binary carries no CRIU (it was built without .cache/criu-bundle): install CRIU with install-criu.sh, or use a binary built with it",
    );
  }
  const id = sha256Hex(blob).slice(0, 16);
  const { header, files } = unpackBundle(blob);
  mkdirSync(prefix, { recursive: true, mode: 0o755 });
  checkOwnership(prefix);
  const dir = join(prefix, id);
  let changed = false;
  if (!isWhole(dir, header)) {
    changed = true;
    const tmp = join(prefix, `.tmp-${id}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      for (const f of files) {
        const p = join(tmp, f.path);
        mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
        writeFileSync(p, f.bytes, { mode: f.mode });
      }
      if (!isWhole(tmp, header)) throw new PreconditionError(`The CRIU written to ${tmp} does not read back as it was written (disk full or failing?)`);
      await checkRuns(join(tmp, "bin/criu"), header);
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
      try {
        renameSync(tmp, dir);
      } catch (e) {
        // Another install of the same bundle got there first.
        if (!isWhole(dir, header)) throw e;
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const current = join(prefix, "current");
  const linked = lstatOrNull(current)?.isSymbolicLink() ? readlinkSync(current) : null;
  if (linked !== id) {
    changed = true;
    const tmpLink = join(prefix, `.current-${process.pid}`);
    rmSync(tmpLink, { force: true });
    symlinkSync(id, tmpLink);
    renameSync(tmpLink, current);
  }
  // Other bundles (older binaries') are no longer used.
  for (const name of readdirSync(prefix)) {
    if (name !== id && name !== "current" && /^[0-9a-f]{16}$/.test(name)) rmSync(join(prefix, name), { recursive: true, force: true });
  }
  return { path: join(current, "bin/criu"), dir, id, criuVersion: header.criuVersion, gitId: header.gitId, changed };
}

/** Every file of the bundle is in `dir` with its size, mode and SHA-256. */
function isWhole(dir: string, header: BundleHeader): boolean {
  for (const f of header.files) {
    const p = join(dir, f.path);
    const st = lstatOrNull(p);
    if (!st?.isFile() || st.size !== f.size || (st.mode & 0o777) !== f.mode) return false;
    if (sha256Hex(readFileSync(p)) !== f.sha256) return false;
  }
  return true;
}

async function checkRuns(criu: string, header: BundleHeader): Promise<void> {
  const r = await run([criu, "--version"], { timeoutMs: 10_000 }).catch((e: Error) => ({ exitCode: -1, stdout: "", stderr: e.message }));
  const version = r.exitCode === 0 ? parseCriuVersion(r.stdout) : null;
  if (version !== header.criuVersion || parseCriuGitId(r.stdout) !== header.gitId) {
    throw new PreconditionError(
      `The carried CRIU does not run on this host (it needs glibc >= 2.36): \`criu --version\` exited ${r.exitCode}: ${(r.stdout + r.stderr).trim().split("\n").slice(-2).join(" | ")}`,
    );
  }
}

/** root runs what is in the prefix: nobody else may be able to change it (owned by us, not group or world writable, no symlink). */
function checkOwnership(prefix: string): void {
  const st = lstatSync(prefix);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory()) throw new PreconditionError(`The CRIU prefix "${prefix}" is not a directory (a symlink?)`);
  if (st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new PreconditionError(
      `The CRIU prefix "${prefix}" is owned by uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)}: only its owner (uid ${uid}) may write to it (chown ${uid} and chmod go-w it)`,
    );
  }
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
