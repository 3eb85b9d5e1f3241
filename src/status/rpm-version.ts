/**
 * RPM version comparison, exactly as rpm does it (rpmio/rpmvercmp.cc and
 * rpmio/rpmver.cc): segments of letters or digits, "~" sorting before
 * anything, "^" after the base version but before anything else.
 */

const isDigit = (c: number) => c >= 48 && c <= 57;
const isAlpha = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isAlnum = (c: number) => isDigit(c) || isAlpha(c);
const TILDE = 126;
const CARET = 94;

/** rpmvercmp: 1 when a is newer, 0 when the same, -1 when b is newer. */
export function rpmvercmp(a: string, b: string): -1 | 0 | 1 {
  if (a === b) return 0;
  const at = (s: string, k: number) => (k < s.length ? s.charCodeAt(k) : 0);
  let one = 0;
  let two = 0;
  while (one < a.length || two < b.length) {
    while (one < a.length && !isAlnum(at(a, one)) && at(a, one) !== TILDE && at(a, one) !== CARET) one++;
    while (two < b.length && !isAlnum(at(b, two)) && at(b, two) !== TILDE && at(b, two) !== CARET) two++;

    if (at(a, one) === TILDE || at(b, two) === TILDE) {
      if (at(a, one) !== TILDE) return 1;
      if (at(b, two) !== TILDE) return -1;
      one++;
      two++;
      continue;
    }
    if (at(a, one) === CARET || at(b, two) === CARET) {
      if (one >= a.length) return -1;
      if (two >= b.length) return 1;
      if (at(a, one) !== CARET) return 1;
      if (at(b, two) !== CARET) return -1;
      one++;
      two++;
      continue;
    }
    if (!(one < a.length && two < b.length)) break;

    let end1 = one;
    let end2 = two;
    const isNum = isDigit(at(a, one));
    const inSegment = isNum ? isDigit : isAlpha;
    while (end1 < a.length && inSegment(at(a, end1))) end1++;
    while (end2 < b.length && inSegment(at(b, end2))) end2++;

    if (end1 === one) return -1; // cannot happen: a has a segment here
    if (end2 === two) return isNum ? 1 : -1; // numeric beats alpha
    let s1 = a.slice(one, end1);
    let s2 = b.slice(two, end2);
    if (isNum) {
      s1 = s1.replace(/^0+/, "");
      s2 = s2.replace(/^0+/, "");
      if (s1.length !== s2.length) return s1.length > s2.length ? 1 : -1;
    }
    if (s1 !== s2) return s1 < s2 ? -1 : 1;
    one = end1;
    two = end2;
  }
  if (one >= a.length && two >= b.length) return 0;
  return one < a.length ? 1 : -1;
}

export interface Evr {
  /** Absent when the string has none; compared as "0". */
  epoch?: string;
  version: string;
  release?: string;
}

/** Split [epoch:]version[-release] the way rpm's parseEVR does. */
export function parseEvr(evr: string): Evr {
  const m = /^(\d*)/.exec(evr)!;
  const afterDigits = m[1]!.length;
  let epoch: string | undefined;
  let rest = evr;
  if (evr[afterDigits] === ":") {
    epoch = m[1] === "" ? "0" : m[1];
    rest = evr.slice(afterDigits + 1);
  }
  // rpm looks for the release's hyphen from the end of the epoch's digits onward.
  const dash = rest.lastIndexOf("-");
  if (dash === -1) return { epoch, version: rest };
  return { epoch, version: rest.slice(0, dash), release: rest.slice(dash + 1) };
}

function compareValues(a: string | undefined, b: string | undefined): number {
  if (a === undefined && b === undefined) return 0;
  if (b === undefined) return 1;
  if (a === undefined) return -1;
  return rpmvercmp(a, b);
}

/** Compare two EVRs as rpmverCmp does: epoch (missing is 0), version, release. */
export function compareEvr(a: string | Evr, b: string | Evr): number {
  const ea = typeof a === "string" ? parseEvr(a) : a;
  const eb = typeof b === "string" ? parseEvr(b) : b;
  return compareValues(ea.epoch ?? "0", eb.epoch ?? "0") || compareValues(ea.version, eb.version) || compareValues(ea.release, eb.release);
}
