/**
 * Build the input of a pending finding from any real export (one made by
 * `autopod checkpoint POD --export FILE`), with every hash recomputed:
 *
 *   bun test/fuzz/pending/make.ts P1|P2|P3 SEED.img OUT.img
 *
 * then `autopod image import OUT.img` and `autopod restore ID --name x --ip ADDR/PREFIX`.
 */
import fs from "node:fs";
import { encodeCriuImage, parseCriuImage } from "../criu-image.ts";
import { fileBytes, layoutOf, parseExport, type RawEntry, serialize, setFileBytes } from "../export-file.ts";

const [which, seedFile, out] = process.argv.slice(2);
if (!which || !seedFile || !out) throw new Error("Usage: bun test/fuzz/pending/make.ts P1|P2|P3 SEED.img OUT.img");
const model = parseExport(new Uint8Array(fs.readFileSync(seedFile)));
const criu = model.manifest.criu as RawEntry[];
const file = (prefix: string) => {
  const e = criu.find((x) => String(x.path).startsWith(prefix));
  if (!e) throw new Error(`The seed has no ${prefix}*`);
  return e;
};

if (which === "P1") {
  // Pagemap entry 6's vaddr (field 1) one byte lower: no longer page-aligned (entry 0 is the head).
  const e = file("pagemap-");
  const img = parseCriuImage(fileBytes(model, e))!;
  const entry = img.entries[Math.min(6, img.entries.length - 1)]!;
  const vaddr = entry.fields.find((f) => f.num === 1)!;
  vaddr.int = vaddr.int! - 1n;
  setFileBytes(model, e, encodeCriuImage(img));
} else if (which === "P2") {
  // mm-1.img cut short: CRIU fails after it forked the pod's tasks.
  const e = file("mm-");
  const b = fileBytes(model, e);
  setFileBytes(model, e, b.subarray(0, b.byteLength - 40));
} else if (which === "P3") {
  // A pod spec value of 4,200 characters: the command and the hostname.
  const pod = model.manifest.pod as Record<string, unknown>;
  pod.command = ["y/".repeat(2100)];
  pod.hostname = "y/".repeat(2100);
} else throw new Error(`Unknown pending finding "${which}"`);
fs.writeFileSync(out, serialize(layoutOf(model)));
console.log(`wrote ${out}`);
