import { clientFor } from "./_client.ts";
import type { CheckpointResult } from "../checkpoint/checkpointer.ts";
import type { Progress } from "../progress.ts";
import { counted, writeSink } from "./_stream.ts";
import { ProgressLine } from "./progress.ts";
import { flagBool, flagList, flagString } from "./args.ts";
import type { Command } from "./command.ts";
import { InvalidArgumentError } from "../errors.ts";

export const checkpointCommand: Command = {
  name: "checkpoint",
  summary: "checkpoint a running pod into an image",
  usage: "checkpoint NAME [--leave-running] [--exclude-volume PODDIR]... [--kill-exec] [--export FILE|-] [--json]",
  details:
    "Dumps the pod's processes with CRIU and stores them, its writable layer, its base and its volumes as an image of content-addressed chunks; prints the image id. " +
    "Without --leave-running the pod stops and shows as checkpointed: `autopod restore NAME` (its latest image) or `autopod restore ID` brings it back. " +
    "With --leave-running it keeps running, paused only while it is dumped (the freeze time is printed). " +
    "If anything fails, the pod keeps running and no partial image is left. " +
    "Processes started with `autopod exec` cannot be in the image: the checkpoint refuses, naming them, unless --kill-exec kills them first. " +
    "On a terminal a progress line shows the phase, bytes and rate (not with --json, nor when output goes to a pipe or file).",
  options: [
    { name: "leave-running", kind: "boolean", help: "keep the pod running after the checkpoint" },
    { name: "exclude-volume", kind: "repeat", value: "PODDIR", help: "leave out a volume (shared storage)" },
    { name: "kill-exec", kind: "boolean", help: "kill processes started with autopod exec instead of refusing" },
    { name: "export", kind: "string", value: "FILE", help: "also export the image to FILE (- for stdout)" },
    { name: "json", kind: "boolean", help: "print JSON" },
  ],
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name || extra.length) throw new InvalidArgumentError("checkpoint takes one pod NAME");
    const exportTo = flagString(ctx.args, "export");
    const client = await clientFor(ctx);
    // With --export -, stdout is the image, not a terminal: no line is drawn.
    const line = ProgressLine.forCommand({ json: flagBool(ctx.args, "json") });
    const onProgress = line.isEnabled ? (p: Progress) => line.update(p) : undefined;
    let cp: CheckpointResult;
    let exported: number | null = null;
    try {
      const req = {
        leaveRunning: flagBool(ctx.args, "leave-running"),
        excludeVolumes: flagList(ctx.args, "exclude-volume"),
        killExec: flagBool(ctx.args, "kill-exec"),
      };
      cp = await client.checkpoint(name, req, onProgress);
      if (exportTo !== undefined) {
        const { stream, totalBytes } = await client.exportImageSized(cp.id);
        exported = await writeSink(exportTo, onProgress ? counted(stream, "exporting", totalBytes, onProgress) : stream);
      }
    } finally {
      line.clear();
    }
    // With --export -, stdout carries the image: the report goes to stderr.
    const say = exportTo === "-" ? ctx.err : ctx.out;
    if (flagBool(ctx.args, "json")) {
      say(JSON.stringify({ ...cp, exportedBytes: exported }, null, 2));
    } else {
      say(cp.id);
      ctx.err(
        `pod "${cp.pod}" ${cp.leftRunning ? "keeps running" : "is checkpointed"}; ` +
          `${cp.leftRunning ? `frozen ${cp.freezeMs} ms, ` : ""}dump ${cp.dumpMs} ms, total ${cp.totalMs} ms, ` +
          `${(cp.newBytes / 1048576).toFixed(1)} MiB new of ${(cp.logicalBytes / 1048576).toFixed(1)} MiB` +
          (exported !== null ? `; exported ${(exported / 1048576).toFixed(1)} MiB to ${exportTo === "-" ? "stdout" : exportTo}` : ""),
      );
    }
    return 0;
  },
};
