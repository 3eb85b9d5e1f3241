import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const rmCommand: Command = {
  name: "rm",
  summary: "remove pods and everything made for them (never volumes or the base)",
  usage: "rm NAME... [--force]",
  details: "Removes the pod's namespaces, mounts, writable layer, address, cgroup and state. A running pod is refused unless --force, which kills it first.",
  options: [{ name: "force", short: "f", kind: "boolean", help: "kill the pod first if it is running" }],
  async run(ctx) {
    const names = ctx.args.positionals;
    if (names.length === 0) throw new InvalidArgumentError("Missing the pod's NAME");
    const client = await clientFor(ctx);
    for (const name of names) {
      await client.removePod(name, flagBool(ctx.args, "force"));
      ctx.out(name);
    }
    return 0;
  },
};
