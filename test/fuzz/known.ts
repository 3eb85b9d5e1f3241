/**
 * What an imported image may not do, by the rows of issue 16's table: a
 * fuzzer input that gets through with one of these is a known hole (being
 * fixed in parallel), counted and listed but not failing the run. Anything
 * else it finds is new, and fails the run.
 */
import { POD_NAME } from "../../src/pods/pod.ts";
import type { RawManifest } from "./export-file.ts";

export interface KnownHole {
  row: number;
  what: string;
}

/** A control character (C0, DEL or C1): what a terminal acts on. */
const isSpecial = (s: string) => [...s].some((c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f));

/** Known holes an accepted manifest shows (it imported; the issue says it must not, or must not be used as is). */
export function knownHolesOf(m: RawManifest): KnownHole[] {
  const out: KnownHole[] = [];
  const criu = Array.isArray(m.criu) ? (m.criu as Array<Record<string, unknown>>) : [];
  const odd = criu.find((e) => e.type !== "file" && e.type !== "dir");
  if (odd) out.push({ row: 1, what: `a ${String(odd.type)} among the CRIU files ("${String(odd.path)}")` });
  const pod = (m.pod ?? {}) as Record<string, unknown>;
  const name = String(pod.name);
  if (!POD_NAME.test(name)) out.push({ row: isSpecial(name) ? 13 : 4, what: `pod name ${JSON.stringify(name).slice(0, 80)} is not a valid pod name` });
  if (Array.isArray(pod.volumes)) {
    for (const v of pod.volumes as Array<Record<string, unknown>>) {
      const host = typeof v?.host === "string" ? v.host : "";
      if (
        host !== "" &&
        host !==
          host
            .replace(/\/+/g, "/")
            .replace(/\/\.$/, "")
            .replace(/(.)\/$/, "$1")
      ) {
        out.push({ row: 3, what: `shared volume host path "${host}" is not normalized` });
      }
    }
  }
  return out;
}

/** Whether a finding's message is one of the known holes (for findings seen at restore time). */
export function knownRowOfMessage(message: string): number | undefined {
  if (/Invalid pod name/.test(message)) return 4;
  return undefined;
}

/**
 * Findings of this fuzzer that are not fixed yet and are not rows of the table
 * (test/fuzz/pending/README.md has each one's reproducer). They are reported,
 * and do not fail the run, until their fix lands: then delete the line here and
 * move the input to regressions/.
 */
export const PENDING: ReadonlyArray<{ id: string; kind: string; message: RegExp; what: string }> = [];

/** The pending finding this is, if any. */
export function pendingOf(kind: string, message: string): string | undefined {
  return PENDING.find((p) => p.kind === kind && p.message.test(message))?.id;
}
