import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import type { Command } from "./command.ts";

export const execCommand: Command = {
  name: "exec",
  summary: "run a command inside a running pod",
  usage: "exec NAME [--] CMD [ARGS...]",
  details:
    "CMD runs in all the pod's namespaces, in its root and its memory cgroup, with the pod's environment. Its output comes back here and autopod exits with its status (128+N when signal N ended it). Its stdin is /dev/null.",
  options: [],
  parse: { stopAfterPositionals: 1 },
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name) throw new InvalidArgumentError("Missing the pod's NAME");
    const cmd = [...extra, ...ctx.args.rest];
    if (cmd.length === 0) throw new InvalidArgumentError("Missing the command: autopod exec NAME [--] CMD [ARGS...]");
    return (await clientFor(ctx)).exec(name, cmd, {
      stdout: (b) => process.stdout.write(b),
      stderr: (b) => process.stderr.write(b),
    });
  },
};
