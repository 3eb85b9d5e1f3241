import { DEFAULT_CRIU_PREFIX, embeddedCriuInfo, installEmbeddedCriu } from "../platform/linux/criu-embedded.ts";
import { InvalidArgumentError } from "../errors.ts";
import { flagBool, flagString } from "./args.ts";
import type { Command } from "./command.ts";

export const criuInstallCommand: Command = {
  name: "criu install",
  summary: "put the CRIU this binary carries on this host (no compiler, no network)",
  usage: "criu install [--prefix DIR] [--json]",
  details: [
    "Unpacks the CRIU built into this binary (CRIU 4.2.1 with autopod's patches, and every library it needs but glibc)",
    `under ${DEFAULT_CRIU_PREFIX}/<id>, checks each file's SHA-256 and that criu runs, then points ${DEFAULT_CRIU_PREFIX}/current at it.`,
    "autopod uses it when the system has no CRIU new enough for its kernel and built with autopod's patches (see `autopod doctor`).",
    "Running it again is harmless. A binary built without the bundle says so and changes nothing.",
  ].join("\n"),
  options: [
    { name: "prefix", kind: "string", value: "DIR", help: `install under DIR (default ${DEFAULT_CRIU_PREFIX}; autopod looks only there)` },
    { name: "json", kind: "boolean", help: "print JSON" },
  ],
  async run(ctx) {
    const prefix = flagString(ctx.args, "prefix") ?? DEFAULT_CRIU_PREFIX;
    if (!prefix.startsWith("/")) throw new InvalidArgumentError(`--prefix must be an absolute path (got "${prefix}")`);
    const info = await embeddedCriuInfo();
    const r = await installEmbeddedCriu(prefix);
    if (flagBool(ctx.args, "json")) {
      ctx.out(JSON.stringify({ ...r, packedBytes: info?.packedBytes, unpackedBytes: info?.unpackedBytes }));
    } else {
      ctx.out(`${r.changed ? "installed" : "already installed:"} CRIU ${r.criuVersion} (${r.gitId}) at ${r.path}`);
    }
    return 0;
  },
};
