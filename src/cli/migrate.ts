import { InvalidArgumentError } from "../errors.ts";
import { formatBytes } from "../format.ts";
import { clientFor } from "./_client.ts";
import { flagBool, flagString } from "./args.ts";
import type { Command } from "./command.ts";

export const migrateCommand: Command = {
  name: "migrate",
  summary: "move a running pod to a peer, frozen only for a moment",
  usage: "migrate NAME --to PEER [--mode auto|precopy|postcopy|stop-and-copy] [--max-rounds N] [--max-downtime MS] [--json]",
  details:
    "Moves the pod with its memory, files, address and TCP connections. First the peer is asked whether it can take the pod " +
    "(CRIU, CPU features, memory, disk, name and address): if not, nothing moves. In precopy mode the pod keeps running " +
    "while rounds of checkpoints send what the peer lacks, until a round no longer shrinks; then the pod is frozen, the last changes go over, " +
    "the peer restores it held stopped, this host lets its copy go, and the peer runs it. stop-and-copy freezes at once and sends everything. " +
    "In postcopy mode the pod is frozen at once but its memory stays here: the peer restores and runs it straight away and pulls the pages " +
    "as the pod touches them and in the background (over mutual TLS between the agents), so the freeze does not grow with the pod's memory; " +
    "this host keeps its frozen copy until every page has arrived, and if the pull fails that copy runs on: what the pod did on the peer " +
    "since the freeze is then lost (precopy never loses anything). By default (auto) pods holding more than 256 MiB go by postcopy, others by precopy. " +
    "With --max-downtime, rounds go on until the freeze predicted from what they measured (dump, capture, transfer rate, restore) fits; " +
    "if it still does not after --max-rounds, nothing is frozen and the command says so. " +
    "At any failure the pod keeps running on exactly one of the two hosts (here, unless the handover was committed). Progress goes to stderr.",
  options: [
    { name: "to", kind: "string", value: "PEER", help: "the peer to move the pod to (see `autopod peers`)" },
    {
      name: "mode",
      kind: "string",
      value: "MODE",
      help: "auto (default: postcopy for a pod holding more than 256 MiB, else precopy; with --max-downtime, precopy while it fits, else postcopy), precopy, postcopy or stop-and-copy",
    },
    { name: "max-rounds", kind: "string", value: "N", help: "pre-copy rounds at most (default 8; the stop rule may end them sooner)" },
    {
      name: "max-downtime",
      kind: "string",
      value: "MS",
      help: "freeze only once the predicted freeze is at most MS milliseconds (precopy; with auto, postcopy when rounds never get there)",
    },
    { name: "json", kind: "boolean", help: "print the report as JSON" },
  ],
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name || extra.length) throw new InvalidArgumentError("migrate takes one pod NAME");
    const to = flagString(ctx.args, "to");
    if (!to) throw new InvalidArgumentError("migrate needs --to PEER");
    const mode = flagString(ctx.args, "mode") ?? "auto";
    if (mode !== "auto" && mode !== "precopy" && mode !== "postcopy" && mode !== "stop-and-copy")
      throw new InvalidArgumentError(`--mode "${mode}": expected auto, precopy, postcopy or stop-and-copy`);
    const roundsFlag = flagString(ctx.args, "max-rounds");
    const maxRounds = roundsFlag === undefined ? 8 : Number(roundsFlag);
    if (!/^\d+$/.test(roundsFlag ?? "8") || maxRounds > 64)
      throw new InvalidArgumentError(`--max-rounds "${roundsFlag}": expected a whole number from 0 to 64`);
    const downtimeFlag = flagString(ctx.args, "max-downtime");
    const maxDowntimeMs = downtimeFlag === undefined ? null : Number(downtimeFlag);
    if (downtimeFlag !== undefined && (!/^\d+$/.test(downtimeFlag) || maxDowntimeMs! < 1 || maxDowntimeMs! > 600_000))
      throw new InvalidArgumentError(`--max-downtime "${downtimeFlag}": expected milliseconds from 1 to 600000`);
    const client = await clientFor(ctx);
    const r = await client.migrate(name, { to, mode, maxRounds, maxDowntimeMs }, (p) => ctx.err(`${p.phase}: ${p.message}`));
    const pages = r.pages ? `, every page there ${r.pages.ms} ms after it ran (${formatBytes(r.pages.bytes)} pulled)` : "";
    if (flagBool(ctx.args, "json")) {
      ctx.out(JSON.stringify(r, null, 2));
    } else {
      ctx.out(
        `pod "${r.pod}" moved to "${r.to}": frozen ${r.freezeMs} ms, ${r.rounds.length} round${r.rounds.length === 1 ? "" : "s"}, ` +
          `${formatBytes(r.bytesSent)} sent of ${formatBytes(r.bytesOffered)} offered${pages}, ${r.totalMs} ms in all` +
          (r.isResumeConfirmed ? "" : ` (the peer runs it once it hears the outcome)`),
      );
    }
    return 0;
  },
};
