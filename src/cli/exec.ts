import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";
import { callerTerminal } from "./_terminal.ts";

export const execCommand: Command = {
  name: "exec",
  summary: "run a command inside a running pod",
  usage: "exec [-i] [-t] NAME [--] CMD [ARGS...]",
  details: [
    "CMD runs in all the pod's namespaces, in its root and its cgroup, with the pod's environment. Its output comes back here",
    "and autopod exits with its status (128+N when signal N ended it). Without -i its stdin is /dev/null.",
    "With -t it gets a terminal of the pod's own (/dev/pts/N in the pod) with this terminal's size, kept in step when it is",
    "resized; this terminal is in raw mode meanwhile, so Ctrl-C, Ctrl-Z and Ctrl-D go to the command's terminal, and it is",
    "put back however autopod ends. `autopod exec -it NAME sh` is a shell in the pod. If autopod or its connection goes",
    "away, the command is killed. A pod with an exec session cannot be checkpointed until it ends (or with --kill-exec).",
  ].join("\n"),
  options: [
    { name: "interactive", short: "i", kind: "boolean", help: "forward stdin to the command" },
    { name: "tty", short: "t", kind: "boolean", help: "give the command a terminal (a pseudo-terminal of the pod)" },
  ],
  parse: { stopAfterPositionals: 1 },
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name) throw new InvalidArgumentError("Missing the pod's NAME");
    const cmd = [...extra, ...ctx.args.rest];
    if (cmd.length === 0) throw new InvalidArgumentError("Missing the command: autopod exec [-i] [-t] NAME [--] CMD [ARGS...]");
    const isInteractive = flagBool(ctx.args, "interactive");
    const hasTty = flagBool(ctx.args, "tty");
    const client = await clientFor(ctx);
    const out = {
      stdout: (b: Uint8Array) => void process.stdout.write(b),
      stderr: (b: Uint8Array) => void process.stderr.write(b),
    };
    if (!isInteractive && !hasTty) return client.exec(name, cmd, out);
    const term = callerTerminal({ raw: isInteractive && hasTty });
    try {
      return await client.exec(name, cmd, out, {
        ...(isInteractive ? { stdin: term.input() } : {}),
        ...(hasTty ? { tty: term.size(), onResize: term.onResize } : {}),
      });
    } finally {
      term.restore();
    }
  },
};
