import type { Command } from "./command.ts";

/**
 * Every command, by the words that select it, loaded only when chosen so that
 * `autopod version` starts fast.
 */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  version: { summary: "print version, commit and Bun version", load: async () => (await import("./version.ts")).versionCommand },
  doctor: { summary: "check that this host has what autopod needs", load: async () => (await import("./doctor.ts")).doctorCommand },
  "config show": { summary: "print the effective configuration", load: async () => (await import("./config-show.ts")).configShowCommand },
  run: { summary: "start a pod and return once its command runs", load: async () => (await import("./run.ts")).runCommand },
  ps: { summary: "list pods: state, pid, address, uptime, memory", load: async () => (await import("./ps.ts")).psCommand },
  logs: { summary: "print a pod's output", load: async () => (await import("./logs.ts")).logsCommand },
  exec: { summary: "run a command inside a running pod", load: async () => (await import("./exec.ts")).execCommand },
  stop: { summary: "stop pods (SIGTERM, then SIGKILL)", load: async () => (await import("./stop.ts")).stopCommand },
  rm: { summary: "remove pods and what was made for them", load: async () => (await import("./rm.ts")).rmCommand },
  checkpoint: { summary: "checkpoint a running pod into an image", load: async () => (await import("./checkpoint.ts")).checkpointCommand },
  restore: { summary: "run a pod again from an image", load: async () => (await import("./restore.ts")).restoreCommand },
  migrate: { summary: "move a running pod to a peer, frozen only for a moment", load: async () => (await import("./migrate.ts")).migrateCommand },
  evacuate: { summary: "move every running pod off this host, live, to peers", load: async () => (await import("./evacuate.ts")).evacuateCommand },
  images: { summary: "list checkpoint images", load: async () => (await import("./images.ts")).imagesCommand },
  "image rm": { summary: "remove an image", load: async () => (await import("./images.ts")).imageRmCommand },
  "image gc": { summary: "delete chunks no image references", load: async () => (await import("./images.ts")).imageGcCommand },
  "image export": { summary: "write an image to one self-contained file", load: async () => (await import("./images.ts")).imageExportCommand },
  "image import": { summary: "read an exported image into the store", load: async () => (await import("./images.ts")).imageImportCommand },
  "cluster init": { summary: "make a cluster: its CA and this host's certificate", load: async () => (await import("./cluster.ts")).clusterInitCommand },
  "cluster add-host": { summary: "write a bundle that lets another host join", load: async () => (await import("./cluster.ts")).clusterAddHostCommand },
  "cluster join": { summary: "join a cluster with a host bundle", load: async () => (await import("./cluster.ts")).clusterJoinCommand },
  "cluster remove-host": { summary: "revoke a host's certificate cluster-wide", load: async () => (await import("./cluster.ts")).clusterRemoveHostCommand },
  "cluster show": { summary: "this host's cluster membership", load: async () => (await import("./cluster.ts")).clusterShowCommand },
  peers: { summary: "list peers and what each says of itself", load: async () => (await import("./peers.ts")).peersCommand },
  "peer add": { summary: "add a peer by its peer API URL", load: async () => (await import("./peers.ts")).peerAddCommand },
  "peer rm": { summary: "forget a peer", load: async () => (await import("./peers.ts")).peerRmCommand },
  "image push": { summary: "send an image to a peer (only the chunks it lacks)", load: async () => (await import("./images.ts")).imagePushCommand },
  "image pull": { summary: "fetch an image from a peer (only the chunks this host lacks)", load: async () => (await import("./images.ts")).imagePullCommand },
  "criu install": {
    summary: "put the CRIU this binary carries on this host (no compiler, no network)",
    load: async () => (await import("./criu-install.ts")).criuInstallCommand,
  },
  events: { summary: "print the update cycle's events (-f to follow)", load: async () => (await import("./events.ts")).eventsCommand },
  status: { summary: "report whether this host needs OS updates or a reboot", load: async () => (await import("./status.ts")).statusCommand },
};

/** Find the command named by the longest run of leading words. */
export function matchCommand(argv: readonly string[]): { key: string; rest: string[] } | undefined {
  for (let n = Math.min(3, argv.length); n >= 1; n--) {
    const key = argv.slice(0, n).join(" ");
    if (key in COMMANDS) return { key, rest: argv.slice(n) };
  }
  return undefined;
}

/** Command groups ("config", "image") named without a subcommand. */
export function subcommandsOf(word: string): string[] {
  return Object.keys(COMMANDS).filter((k) => k.startsWith(word + " "));
}
