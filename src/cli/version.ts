import { BUN_VERSION, COMMIT, VERSION } from "../version.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const versionCommand: Command = {
  name: "version",
  summary: "print version, commit and Bun version",
  usage: "version [--json]",
  options: [{ name: "json", kind: "boolean", help: "print JSON" }],
  async run(ctx) {
    const info = { version: VERSION, commit: COMMIT, bun: BUN_VERSION };
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(info) : `autopod ${VERSION} (commit ${COMMIT}, bun ${BUN_VERSION})`);
    return 0;
  },
};
