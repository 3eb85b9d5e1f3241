import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { openSized } from "./_stream.ts";
import { flagBool, flagString } from "./args.ts";
import type { Command } from "./command.ts";
import { importing } from "./images.ts";
import { ProgressLine } from "./progress.ts";

export const restoreCommand: Command = {
  name: "restore",
  summary: "run a pod again from an image",
  usage:
    "restore POD|IMAGE [--name NEW] [--ip ADDR/PREFIX] [--json]\n       autopod restore --image IMAGE [...]\n       autopod restore --import FILE|- [--trust] [--name NEW] [--ip ADDR/PREFIX]",
  details:
    "Brings the pod back with the memory, processes, open files, working directory, hostname, address and files it had at the checkpoint. " +
    "TCP connections are kept when it comes back at the same address, and closed when --ip gives another. " +
    "POD is a pod name: its latest image. IMAGE is an image id or a unique prefix of one (see `autopod images`); a string that is both is refused: say which with --image. " +
    "--import reads an exported image first. " +
    "Every chunk is checked against its hash as it is read: the pod's files and CRIU's small images before CRIU starts, and memory pages the store keeps whole while CRIU restores them, with the processes held stopped until every page has matched (a damaged image never runs). " +
    "A failed restore leaves the image intact. " +
    "An imported image not signed by this host needs --trust, and never takes over a pod of this host: restore it with --name (docs/trust.md).",
  options: [
    { name: "image", kind: "string", value: "IMAGE", help: "restore this image id (or unique prefix), never a pod name" },
    { name: "name", kind: "string", value: "NEW", help: "restore under another name (a second, independent pod)" },
    { name: "ip", kind: "string", value: "ADDR/PREFIX", help: "restore at another address (closes TCP connections)" },
    { name: "import", kind: "string", value: "FILE", help: "import an exported image (- for stdin), then restore it" },
    { name: "trust", kind: "boolean", help: "with --import: admit an image this host did not sign (as an image from another host)" },
    { name: "json", kind: "boolean", help: "print JSON" },
  ],
  async run(ctx) {
    const from = flagString(ctx.args, "import");
    const byImage = flagString(ctx.args, "image");
    const [ref, ...extra] = ctx.args.positionals;
    const given = [ref, byImage, from].filter((x) => x !== undefined).length;
    if (extra.length || given !== 1) throw new InvalidArgumentError("restore takes one POD name or IMAGE id, or --image IMAGE, or --import FILE");
    const isTrusted = flagBool(ctx.args, "trust");
    if (isTrusted && from === undefined) throw new InvalidArgumentError("--trust goes with --import FILE: it admits that file's image");
    const client = await clientFor(ctx);
    let which: { image: string } | { ref: string } = byImage !== undefined ? { image: byImage } : { ref: ref! };
    if (from !== undefined) {
      const source = await openSized(from);
      const line = ProgressLine.forCommand({ json: flagBool(ctx.args, "json") });
      let imp: Awaited<ReturnType<typeof client.importImage>>;
      try {
        imp = await client.importImage(importing(source, line), { trust: isTrusted });
      } finally {
        line.clear();
      }
      which = { image: imp.id };
      ctx.err(`imported image ${imp.id} (${imp.newChunks} new chunks)`);
    }
    if ("image" in which && !/^[0-9a-f]{4,64}$/.test(which.image))
      throw new InvalidArgumentError(`Invalid --image "${which.image}": an image id (4 to 64 hex digits)`);
    const r = await client.restore({ ...which, name: flagString(ctx.args, "name"), ip: flagString(ctx.args, "ip") });
    if (flagBool(ctx.args, "json")) {
      ctx.out(JSON.stringify(r, null, 2));
    } else {
      ctx.out(
        `pod "${r.pod.name}" running again: pid ${r.pod.pid}, address ${r.pod.address}; TCP connections ${r.tcp}; restore ${r.totalMs} ms (CRIU ${r.criuMs} ms)`,
      );
      for (const n of r.notes) ctx.err(`note: ${n}`);
    }
    return 0;
  },
};
