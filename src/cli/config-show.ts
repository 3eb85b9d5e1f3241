import { envNameOf } from "../config/load.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const configShowCommand: Command = {
  name: "config show",
  summary: "print the effective configuration",
  usage: "config show [--json]",
  details: "Shows every key after the config file, AUTOPOD_* environment variables and flags are applied, and where each set value came from.",
  options: [{ name: "json", kind: "boolean", help: "print JSON" }],
  async run(ctx) {
    const loaded = await ctx.config();
    if (flagBool(ctx.args, "json")) {
      ctx.out(
        JSON.stringify({ path: loaded.path, file_found: loaded.fileFound, config: loaded.config, origins: loaded.origins, env_vars: loaded.envVars }, null, 2),
      );
      return 0;
    }
    ctx.out(`# config file: ${loaded.path}${loaded.fileFound ? "" : " (not found; defaults in use)"}`);
    const lines: string[] = [];
    const walk = (obj: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(obj)) {
        const key = prefix + k;
        if (typeof v === "object" && v !== null && !Array.isArray(v)) walk(v as Record<string, unknown>, key + ".");
        else {
          const origin = loaded.origins[key];
          const note =
            origin === "env"
              ? `  # from ${loaded.envVars[key] ?? envNameOf(key)}`
              : origin === "flag"
                ? "  # from a flag"
                : origin === "file"
                  ? "  # from file"
                  : "";
          lines.push(`${key} = ${JSON.stringify(v)}${note}`);
        }
      }
    };
    walk(loaded.config as unknown as Record<string, unknown>, "");
    ctx.out(lines.join("\n"));
    return 0;
  },
};
