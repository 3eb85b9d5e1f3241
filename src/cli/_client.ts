import { LocalClient } from "../api/local/client.ts";
import type { CommandContext } from "./command.ts";

/** The local API client at the configured socket (--socket, AUTOPOD_SOCKET, config file). */
export async function clientFor(ctx: CommandContext): Promise<LocalClient> {
  return new LocalClient(await ctx.socket());
}
