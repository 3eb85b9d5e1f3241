/**
 * apt's Release and InRelease files, and the rule that says whether a
 * package's origin is a security archive: the rule unattended-upgrades
 * applies by default on Debian and Ubuntu.
 */
import { clearsignedBody, parseDeb822 } from "./deb822.ts";

/** The fields of a Release file that identify an archive. */
export interface AptRelease {
  origin?: string;
  label?: string;
  /** Archive name as apt prints it ("oldstable-security"). */
  suite?: string;
  codename?: string;
  version?: string;
}

/** Parse a Release or InRelease file's header; the checksum lists are ignored. */
export function parseRelease(text: string): AptRelease {
  const s = parseDeb822(clearsignedBody(text))[0] ?? {};
  const pick = (k: string) => (s[k] === undefined || s[k] === "" ? undefined : s[k]);
  return { origin: pick("Origin"), label: pick("Label"), suite: pick("Suite"), codename: pick("Codename"), version: pick("Version") };
}

const SECURITY_SUFFIX = "-security";

/**
 * True when packages from this archive are security updates: Debian's
 * security archive (origin Debian, label Debian-Security, codename or suite
 * "*-security"), Ubuntu's "*-security" pocket, and Ubuntu Pro's ESM pockets
 * (origins UbuntuESM and UbuntuESMApps, "*-infra-security", "*-apps-security").
 * When the origin is unknown the label stands in for it, as apt's own output
 * names an archive by label.
 */
export function isSecurityArchive(r: AptRelease): boolean {
  const origin = r.origin ?? (r.label === "Debian-Security" ? "Debian" : r.label);
  const pocket = [r.suite, r.codename].some((x) => x?.endsWith(SECURITY_SUFFIX));
  switch (origin) {
    case "Debian":
      return r.label === "Debian-Security" || (pocket && (r.label === undefined || r.label === "Debian"));
    case "Ubuntu":
    case "UbuntuESM":
    case "UbuntuESMApps":
      return pocket;
    default:
      return false;
  }
}
