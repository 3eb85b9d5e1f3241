import type { LocalClient } from "../api/local/client.ts";
import { InvalidArgumentError } from "../errors.ts";
import { formatBytes } from "../pods/pod.ts";
import type { TransferReport } from "../transfer/push.ts";
import type { ImageListing } from "../api/local/image-routes.ts";
import type { ImageOrigin } from "../trust/image-trust.ts";
import { clientFor } from "./_client.ts";
import { escapeCell } from "./escape.ts";
import { counted, openSized, type Source, writeSink } from "./_stream.ts";
import { flagBool, flagString } from "./args.ts";
import type { Command } from "./command.ts";
import { ProgressLine } from "./progress.ts";

const json = { name: "json", kind: "boolean", help: "print JSON" } as const;

/** The ORIGIN column: where an image came from (docs/trust.md). */
const ORIGIN_WORDS: Record<ImageOrigin, string> = { local: "this host", imported: "trusted import", unsigned: "unsigned" };

export function formatImageTable(images: ImageListing[]): string {
  const rows = [["ID", "POD", "CREATED", "SIZE", "UNIQUE", "PARENT", "ORIGIN"]];
  for (const i of images)
    rows.push([
      i.id.slice(0, 12),
      escapeCell(i.pod),
      i.createdAt.replace("T", " ").slice(0, 19),
      formatBytes(i.logicalBytes),
      formatBytes(i.uniqueBytes),
      i.parent ? i.parent.slice(0, 12) : "-",
      ORIGIN_WORDS[i.origin] ?? i.origin,
    ]);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export const imagesCommand: Command = {
  name: "images",
  summary: "list checkpoint images",
  usage: "images [--json]",
  details:
    "SIZE is the image's logical size; UNIQUE the bytes stored only for this image (what `image rm` then `image gc` would free). " +
    'ORIGIN is "this host" (signed by this host\'s key), "trusted import" (imported with --trust) or "unsigned" (neither: an import from before signatures). ' +
    "--json has it as origin (local, imported, unsigned) with signer, the signing key's id. See docs/trust.md.",
  options: [json],
  async run(ctx) {
    const images = await (await clientFor(ctx)).images();
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(images, null, 2) : formatImageTable(images));
    return 0;
  },
};

/** An import's bytes, counted on `line` when it draws. */
export function importing(source: Source, line: ProgressLine): ReadableStream<Uint8Array> {
  return line.isEnabled ? counted(source.stream, "importing", source.totalBytes, (p) => line.update(p)) : source.stream;
}

function oneArg(ctx: { args: { positionals: string[] } }, what: string): string {
  const [a, ...extra] = ctx.args.positionals;
  if (!a || extra.length) throw new InvalidArgumentError(`Expected ${what}`);
  return a;
}

export const imageRmCommand: Command = {
  name: "image rm",
  summary: "remove an image (its chunks go at the next gc)",
  usage: "image rm ID",
  options: [],
  async run(ctx) {
    const id = await (await clientFor(ctx)).removeImage(oneArg(ctx, "one image ID"));
    ctx.out(`removed ${id}`);
    return 0;
  },
};

export const imageGcCommand: Command = {
  name: "image gc",
  summary: "delete chunks no image references",
  usage: "image gc [--json]",
  details:
    "Safe while a checkpoint or import runs: chunks they are writing are pinned. " +
    "On a terminal a progress line shows what it is doing (not with --json, nor when output goes to a pipe or file).",
  options: [json],
  async run(ctx) {
    const isJson = flagBool(ctx.args, "json");
    const line = ProgressLine.forCommand({ json: isJson });
    let r: Awaited<ReturnType<LocalClient["gcImages"]>>;
    try {
      r = await (await clientFor(ctx)).gcImages(line.isEnabled ? (p) => line.update(p) : undefined);
    } finally {
      line.clear();
    }
    ctx.out(isJson ? JSON.stringify(r, null, 2) : `removed ${r.removedChunks} chunks, freed ${formatBytes(r.packBytesBefore - r.packBytesAfter)} on disk`);
    return 0;
  },
};

export const imageExportCommand: Command = {
  name: "image export",
  summary: "write an image to one self-contained file",
  usage: "image export ID FILE|-",
  details:
    "The file carries the manifest and every chunk with its hash; `autopod image import` or `autopod restore --import` read it on any host. " +
    "On a terminal a progress line shows the bytes written of the file's size, rate and time left (not when the file is stdout).",
  options: [],
  async run(ctx) {
    const [id, file, ...extra] = ctx.args.positionals;
    if (!id || !file || extra.length) throw new InvalidArgumentError("image export takes an image ID and a FILE (- for stdout)");
    const line = ProgressLine.forCommand({ json: false });
    let n: number;
    try {
      const { stream, totalBytes } = await (await clientFor(ctx)).exportImageSized(id);
      n = await writeSink(file, line.isEnabled ? counted(stream, "exporting", totalBytes, (p) => line.update(p)) : stream);
    } finally {
      line.clear();
    }
    ctx.err(`exported ${formatBytes(n)}${file === "-" ? "" : ` to ${file}`}`);
    return 0;
  },
};

export const imageImportCommand: Command = {
  name: "image import",
  summary: "read an exported image into the store",
  usage: "image import FILE|- [--trust] [--json]",
  details:
    "Verifies every chunk and the whole file; a truncated, corrupted or hostile file changes nothing. Chunks the store has already are skipped. " +
    "An image not signed by this host is refused unless --trust says you trust where the file came from; it is then restored as an image from another host, with every check that brings (docs/trust.md). " +
    "On a terminal a progress line shows the bytes read of the file, rate and time left (not with --json, nor when output goes to a pipe or file).",
  options: [{ name: "trust", kind: "boolean", help: "admit an image this host did not sign (as an image from another host)" }, json],
  async run(ctx) {
    const isJson = flagBool(ctx.args, "json");
    const source = await openSized(oneArg(ctx, "one FILE (- for stdin)"));
    const line = ProgressLine.forCommand({ json: isJson });
    let r: Awaited<ReturnType<LocalClient["importImage"]>>;
    try {
      r = await (await clientFor(ctx)).importImage(importing(source, line), { trust: flagBool(ctx.args, "trust") });
    } finally {
      line.clear();
    }
    ctx.out(isJson ? JSON.stringify(r, null, 2) : r.id);
    return 0;
  },
};

function formatTransfer(r: TransferReport): string {
  const rate = r.ms > 0 ? `${formatBytes((r.wireBytes / r.ms) * 1000)}/s` : "-";
  return (
    `${r.direction === "push" ? "pushed" : "pulled"} image ${r.image.slice(0, 12)} ${r.direction === "push" ? "to" : "from"} ${r.peer}: ` +
    `${r.chunksSent} of ${r.chunksOffered} chunks sent (${formatBytes(r.bytesSent)} of ${formatBytes(r.bytesOffered)}; ${r.chunksSkipped} the receiver had), ` +
    `${formatBytes(r.wireBytes)} on the wire in ${r.ms} ms (${rate})`
  );
}

export const imagePushCommand: Command = {
  name: "image push",
  summary: "send an image to a peer: only the chunks it lacks travel",
  usage: "image push ID --to PEER [--json]",
  details:
    "The peer verifies every chunk as it arrives and records the image only when all are there; a push cut short keeps what arrived, and the next one sends only the rest. " +
    "On a terminal a progress line shows bytes, rate and time left (not with --json, nor when output goes to a pipe or file).",
  options: [{ name: "to", kind: "string", value: "PEER", help: "the peer (see `autopod peers`)" }, json],
  async run(ctx) {
    const to = flagString(ctx.args, "to");
    if (!to) throw new InvalidArgumentError("image push needs --to PEER");
    const isJson = flagBool(ctx.args, "json");
    const line = ProgressLine.forCommand({ json: isJson });
    let r: TransferReport;
    try {
      r = await (await clientFor(ctx)).pushImage(oneArg(ctx, "one image ID"), to, line.isEnabled ? (p) => line.update(p) : undefined);
    } finally {
      line.clear();
    }
    ctx.out(isJson ? JSON.stringify(r, null, 2) : formatTransfer(r));
    return 0;
  },
};

export const imagePullCommand: Command = {
  name: "image pull",
  summary: "fetch an image from a peer: only the chunks this host lacks travel",
  usage: "image pull ID --from PEER [--json]",
  details:
    "ID is the image's full id (64 hex digits), as `autopod images` on the peer shows it with --json. " +
    "On a terminal a progress line shows bytes, rate and time left (not with --json, nor when output goes to a pipe or file).",
  options: [{ name: "from", kind: "string", value: "PEER", help: "the peer (see `autopod peers`)" }, json],
  async run(ctx) {
    const from = flagString(ctx.args, "from");
    if (!from) throw new InvalidArgumentError("image pull needs --from PEER");
    const isJson = flagBool(ctx.args, "json");
    const line = ProgressLine.forCommand({ json: isJson });
    let r: TransferReport;
    try {
      r = await (await clientFor(ctx)).pullImage(oneArg(ctx, "one image ID"), from, line.isEnabled ? (p) => line.update(p) : undefined);
    } finally {
      line.clear();
    }
    ctx.out(isJson ? JSON.stringify(r, null, 2) : formatTransfer(r));
    return 0;
  },
};
