import installScript from "../scripts/install-criu.sh" with { type: "text" };
import rlimitsPatch from "../scripts/criu-patches/0001-dump-read-rlimits-from-proc-when-prlimit64-is-refused.patch" with { type: "text" };
import pipeSizePatch from "../scripts/criu-patches/0002-page-pipe-clamp-the-read-pipe-to-pipe-max-size.patch" with { type: "text" };
import lazyPagesPatch from "../scripts/criu-patches/0003-lazy-pages-pipeline-background-transfer.patch" with { type: "text" };

/**
 * autopod's CRIU patches (scripts/criu-patches/), by file name. Every file of that folder is listed here
 * (criu-installer.test.ts checks), so the binary carries each one.
 */
export const CRIU_PATCHES: ReadonlyArray<{ name: string; text: string }> = [
  { name: "0001-dump-read-rlimits-from-proc-when-prlimit64-is-refused.patch", text: rlimitsPatch },
  { name: "0002-page-pipe-clamp-the-read-pipe-to-pipe-max-size.patch", text: pipeSizePatch },
  { name: "0003-lazy-pages-pipeline-background-transfer.patch", text: lazyPagesPatch },
];

/**
 * The CRIU installer as the binary carries it: scripts/install-criu.sh with the patches appended after its
 * last line ("#### criu-patch NAME" before each), where the script reads them when no criu-patches/ is beside it.
 */
export function carriedCriuInstaller(): string {
  const parts = [installScript.endsWith("\n") ? installScript : `${installScript}\n`];
  for (const p of CRIU_PATCHES) parts.push(`#### criu-patch ${p.name}\n`, p.text.endsWith("\n") ? p.text : `${p.text}\n`);
  return parts.join("");
}

/** The GitID a CRIU built by install-criu.sh with these patches prints: "autopod-" and 12 hex digits of their SHA-256. */
export function criuPatchSetGitId(): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const p of [...CRIU_PATCHES].sort((a, b) => (a.name < b.name ? -1 : 1))) h.update(p.text);
  return `autopod-${h.digest("hex").slice(0, 12)}`;
}
