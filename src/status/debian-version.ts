/**
 * Debian version comparison, exactly as dpkg does it (lib/dpkg/version.c):
 * [epoch:]upstream_version[-debian_revision], compared epoch first, then
 * upstream version and revision with verrevcmp, where "~" sorts before
 * everything, even the end of the string.
 */
import { InvalidArgumentError } from "../errors.ts";

export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** Split a version the way dpkg's parseversion does; throws on what dpkg rejects outright. */
export function parseDebianVersion(text: string): DebianVersion {
  const s = text.trim();
  if (s === "") throw new InvalidArgumentError("Version string is empty");
  if (/\s/.test(s)) throw new InvalidArgumentError(`Version "${text}" has embedded spaces`);
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(":");
  if (colon !== -1) {
    const e = s.slice(0, colon);
    if (!/^\d+$/.test(e)) throw new InvalidArgumentError(`Epoch in version "${text}" is not a number`);
    epoch = Number(e);
    if (!Number.isSafeInteger(epoch) || epoch > 2147483647) throw new InvalidArgumentError(`Epoch in version "${text}" is too big`);
    rest = s.slice(colon + 1);
    if (rest === "") throw new InvalidArgumentError(`Nothing after colon in version "${text}"`);
  }
  const dash = rest.lastIndexOf("-");
  const upstream = dash === -1 ? rest : rest.slice(0, dash);
  const revision = dash === -1 ? "" : rest.slice(dash + 1);
  if (dash !== -1 && revision === "") throw new InvalidArgumentError(`Revision number is empty in version "${text}"`);
  if (upstream === "") throw new InvalidArgumentError(`Version number is empty in "${text}"`);
  return { epoch, upstream, revision };
}

const isDigit = (c: number) => c >= 48 && c <= 57;
const isAlpha = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

/** dpkg's order(): digits 0 (they are compared apart), letters first, "~" below all, end of string 0. */
function order(c: number): number {
  if (c === 0 || isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 126 /* ~ */) return -1;
  return c + 256;
}

/** dpkg's verrevcmp on one part (upstream version or revision). */
export function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  const at = (s: string, k: number) => (k < s.length ? s.charCodeAt(k) : 0);
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(at(a, i))) || (j < b.length && !isDigit(at(b, j)))) {
      const ac = order(at(a, i));
      const bc = order(at(b, j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (at(a, i) === 48) i++;
    while (at(b, j) === 48) j++;
    while (isDigit(at(a, i)) && isDigit(at(b, j))) {
      if (!firstDiff) firstDiff = at(a, i) - at(b, j);
      i++;
      j++;
    }
    if (isDigit(at(a, i))) return 1;
    if (isDigit(at(b, j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** Compare two Debian versions: negative, zero or positive, like `dpkg --compare-versions`. */
export function compareDebianVersions(a: string | DebianVersion, b: string | DebianVersion): number {
  const va = typeof a === "string" ? parseDebianVersion(a) : a;
  const vb = typeof b === "string" ? parseDebianVersion(b) : b;
  if (va.epoch !== vb.epoch) return va.epoch > vb.epoch ? 1 : -1;
  const r = verrevcmp(va.upstream, vb.upstream);
  if (r) return r;
  return verrevcmp(va.revision, vb.revision);
}
