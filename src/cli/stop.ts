import { MAX_STOP_TIMEOUT_SECONDS } from "../api/local/schemas.ts";
import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagString } from "./args.ts";
import type { Command } from "./command.ts";

export const stopCommand: Command = {
  name: "stop",
  summary: "stop pods: SIGTERM, then SIGKILL after a grace period",
  usage: "stop NAME... [--timeout SECONDS]",
  details:
    "A pod's pid 1 ignores signals it has no handler for, so a pod that does not end on SIGTERM is killed when the grace period is over. Stopping a pod that has already ended does nothing.",
  options: [{ name: "timeout", short: "t", kind: "string", value: "SECONDS", help: "grace period before SIGKILL (default 10, at most 240)" }],
  async run(ctx) {
    const names = ctx.args.positionals;
    if (names.length === 0) throw new InvalidArgumentError("Missing the pod's NAME");
    const t = flagString(ctx.args, "timeout") ?? "10";
    if (!/^\d+(\.\d+)?$/.test(t) || Number(t) > MAX_STOP_TIMEOUT_SECONDS) {
      throw new InvalidArgumentError(`Invalid --timeout "${t}": expected seconds, 0 to ${MAX_STOP_TIMEOUT_SECONDS}`);
    }
    const client = await clientFor(ctx);
    for (const name of names) {
      const pod = await client.stopPod(name, Number(t));
      ctx.out(`${pod.name} ${pod.state}`);
    }
    return 0;
  },
};
