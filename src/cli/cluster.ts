import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { MAX_BUNDLE_BYTES } from "../cluster/bundle.ts";
import type { ClusterView } from "../cluster/cluster.ts";
import { AlreadyExistsError, InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagBool, flagList, flagString } from "./args.ts";
import type { Command } from "./command.ts";

const json = { name: "json", kind: "boolean", help: "print JSON" } as const;
const address = {
  name: "address",
  kind: "repeat",
  value: "ADDR",
  help: "an IP address or DNS name peers reach the host at (a name in its certificate)",
} as const;

function oneArg(ctx: { args: { positionals: string[] } }, what: string): string {
  const [a, ...extra] = ctx.args.positionals;
  if (!a || extra.length) throw new InvalidArgumentError(`Expected ${what}`);
  return a;
}

/** This machine's host name as a cluster host name: lower case, other characters as '-'. */
export function defaultHostName(h = hostname()): string {
  const n = h
    .toLowerCase()
    .split(".")[0]!
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  return n || "host";
}

export function formatClusterView(v: ClusterView & { listening?: string | null }): string {
  if (!v.joined) return "not in a cluster (run `autopod cluster init` here, or `autopod cluster join BUNDLE` with a bundle from the cluster's first host)";
  const lines = [
    `cluster ${v.cluster}: this host is "${v.host}"${v.isCa ? " (holds the CA: adds and removes hosts)" : ""}`,
    `certificate serial ${v.certificate!.serial}, valid until ${v.certificate!.notAfter}; addresses ${v.addresses!.join(", ") || "-"}`,
    `peer API ${v.listening ? `listening on ${v.listening}` : "not listening"}`,
    `revocation list of ${v.revocationListTime}: ${v.revoked!.length} revoked`,
  ];
  if (v.hosts) for (const h of v.hosts) lines.push(`  host ${h.name}  serial ${h.serial}  ${h.revokedAt ? `removed ${h.revokedAt}` : `issued ${h.issuedAt}`}`);
  return lines.join("\n");
}

export const clusterInitCommand: Command = {
  name: "cluster init",
  summary: "make a cluster: its CA, and this host's certificate",
  usage: "cluster init [--name CLUSTER] [--host NAME] [--address ADDR]... [--json]",
  details:
    "Makes the cluster's certificate authority (its key stays on this host, mode 0600, in the state directory) and this host's certificate. " +
    "The agent then serves the peer API (peer.listen) over mutual TLS. Add other hosts with `autopod cluster add-host`.",
  options: [
    { name: "name", kind: "string", value: "CLUSTER", help: "the cluster's name (default: default)" },
    { name: "host", kind: "string", value: "NAME", help: "this host's name in the cluster (default: its host name)" },
    address,
    json,
  ],
  async run(ctx) {
    if (ctx.args.positionals.length) throw new InvalidArgumentError("cluster init takes no arguments");
    const v = await (await clientFor(ctx)).clusterInit({
      cluster: flagString(ctx.args, "name") ?? "default",
      host: flagString(ctx.args, "host") ?? defaultHostName(),
      addresses: flagList(ctx.args, "address"),
    });
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(v, null, 2) : formatClusterView(v));
    return 0;
  },
};

export const clusterAddHostCommand: Command = {
  name: "cluster add-host",
  summary: "write a bundle that lets another host join the cluster",
  usage: "cluster add-host NAME [--address ADDR]... [--out FILE]",
  details:
    "Run on the host that made the cluster. The bundle holds the new host's key and certificate, the CA certificate and the revocation list: " +
    "carry it to the new host (it can be air-gapped), run `autopod cluster join FILE` there, then delete it. It is written mode 0600 and never over an existing file.",
  options: [address, { name: "out", kind: "string", value: "FILE", help: "where to write the bundle (default: NAME.bundle here)" }],
  async run(ctx) {
    const name = oneArg(ctx, "the new host's NAME");
    const out = flagString(ctx.args, "out") ?? `${name}.bundle`;
    const bundle = await (await clientFor(ctx)).clusterAddHost({ name, addresses: flagList(ctx.args, "address") });
    let fd: number;
    try {
      fd = openSync(out, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new AlreadyExistsError(`Cannot write the bundle: "${out}" exists (choose another with --out)`);
      throw e;
    }
    try {
      writeSync(fd, bundle);
    } finally {
      closeSync(fd);
    }
    ctx.out(`wrote ${out}: on host "${name}", run \`autopod cluster join ${out}\`, then delete the file (it holds the host's private key)`);
    return 0;
  },
};

export const clusterJoinCommand: Command = {
  name: "cluster join",
  summary: "join a cluster with a bundle from `cluster add-host`",
  usage: "cluster join BUNDLE [--json]",
  options: [json],
  async run(ctx) {
    const path = oneArg(ctx, "one BUNDLE file");
    const text = readFileSync(path === "-" ? 0 : path, "utf8");
    if (text.length > MAX_BUNDLE_BYTES) throw new InvalidArgumentError(`"${path}" is not a host bundle: larger than ${MAX_BUNDLE_BYTES} bytes`);
    const v = await (await clientFor(ctx)).clusterJoin(text);
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(v, null, 2) : formatClusterView(v));
    return 0;
  },
};

export const clusterRemoveHostCommand: Command = {
  name: "cluster remove-host",
  summary: "revoke a host: every peer refuses its certificate from then on",
  usage: "cluster remove-host NAME [--json]",
  details:
    "Run on the host that made the cluster. The new revocation list goes to every peer this host reaches now; the others get it from any member they talk to. " +
    "The removed host need not be up.",
  options: [json],
  async run(ctx) {
    const r = await (await clientFor(ctx)).clusterRemoveHost(oneArg(ctx, "one host NAME"));
    if (flagBool(ctx.args, "json")) {
      ctx.out(JSON.stringify(r, null, 2));
    } else {
      ctx.out(`removed host "${r.removed}"`);
      for (const p of r.peers)
        ctx.out(
          `  peer ${p.peer}: ${p.error ? `not reached (${p.error}); it will hear of it from another member` : p.adopted ? "revocation list taken" : "already had it"}`,
        );
    }
    return 0;
  },
};

export const clusterShowCommand: Command = {
  name: "cluster show",
  summary: "this host's cluster membership",
  usage: "cluster show [--json]",
  options: [json],
  async run(ctx) {
    const v = await (await clientFor(ctx)).cluster();
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(v, null, 2) : formatClusterView(v));
    return 0;
  },
};
