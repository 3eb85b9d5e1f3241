import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const logsCommand: Command = {
  name: "logs",
  summary: "print a pod's output (stdout and stderr)",
  usage: "logs NAME [-f]",
  options: [{ name: "follow", short: "f", kind: "boolean", help: "keep printing new output until the pod ends" }],
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name) throw new InvalidArgumentError("Missing the pod's NAME");
    if (extra.length) throw new InvalidArgumentError(`Unexpected argument "${extra[0]}"`);
    for await (const chunk of (await clientFor(ctx)).logs(name, flagBool(ctx.args, "follow"))) process.stdout.write(chunk);
    return 0;
  },
};
