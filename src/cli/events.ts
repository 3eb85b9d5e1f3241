import { InvalidArgumentError } from "../errors.ts";
import { formatEvent } from "../update/events.ts";
import { clientFor } from "./_client.ts";
import { flagBool, flagString } from "./args.ts";
import type { Command } from "./command.ts";

export const eventsCommand: Command = {
  name: "events",
  summary: "print the update cycle's events (-f to follow)",
  usage: "events [-f] [--json] [-n N]",
  details: [
    "Every step of the unscheduled-update cycle is an event: the need for an update,",
    "the window, blockers, the fleet lock, the evacuation, the update, the reboot,",
    "and after it the release of the lock and the pods' return (docs/updates.md).",
    "The agent keeps the newest on disk. With --json, without -f: one JSON array;",
    "with -f: one JSON object per line as they come.",
  ].join("\n"),
  options: [
    { name: "follow", short: "f", kind: "boolean", help: "keep printing new events as they come" },
    { name: "json", kind: "boolean", help: "JSON (an array; JSON lines with -f)" },
    { name: "lines", short: "n", kind: "string", value: "N", help: "only the last N events first (default 1000)" },
  ],
  async run(ctx) {
    if (ctx.args.positionals.length) throw new InvalidArgumentError(`Unexpected argument "${ctx.args.positionals[0]}"`);
    const n = flagString(ctx.args, "lines");
    if (n !== undefined && !/^\d{1,6}$/.test(n)) throw new InvalidArgumentError(`-n must be a whole number of events (got "${n}")`);
    const limit = n === undefined ? 1000 : Number(n);
    const json = flagBool(ctx.args, "json");
    const client = await clientFor(ctx);
    if (!flagBool(ctx.args, "follow")) {
      const events = await client.events(0, limit);
      if (json) ctx.out(JSON.stringify(events, null, 2));
      else if (events.length) ctx.out(events.map(formatEvent).join("\n"));
      return 0;
    }
    for await (const e of client.followEvents(0, limit)) ctx.out(json ? JSON.stringify(e) : formatEvent(e));
    return 0;
  },
};
