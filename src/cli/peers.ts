import type { PeerStatus } from "../api/peer/peer-directory.ts";
import { formatBytes } from "../format.ts";
import { InvalidArgumentError } from "../errors.ts";
import { clientFor } from "./_client.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

const json = { name: "json", kind: "boolean", help: "print JSON" } as const;

export function formatPeerTable(peers: PeerStatus[]): string {
  if (!peers.length) return "no peers (add one with `autopod peer add NAME https://ADDRESS:7443`)";
  const rows = [["NAME", "URL", "STATE", "RTT", "VERSION", "CRIU", "KERNEL", "MEM FREE", "DISK FREE", "PODS", "PATCHES"]];
  for (const p of peers) {
    const i = p.info;
    rows.push([
      p.name,
      p.url,
      p.reachable ? "up" : "unreachable",
      p.rttMs === null ? "-" : `${p.rttMs} ms`,
      i?.version ?? "-",
      i?.criu ?? "-",
      i?.kernel ?? "-",
      i ? formatBytes(i.memory.availableBytes) : "-",
      i ? formatBytes(i.disk.freeBytes) : "-",
      i ? String(i.pods.length) : "-",
      i?.verdict ?? "-",
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd(),
  );
  for (const p of peers) if (p.error) table.push(`${p.name}: ${p.error}`);
  return table.join("\n");
}

export const peersCommand: Command = {
  name: "peers",
  summary: "list peers: reachability, round trip, version, CRIU, kernel, free memory and disk, pods, patch verdict",
  usage: "peers [--json]",
  options: [json],
  async run(ctx) {
    const peers = await (await clientFor(ctx)).peers();
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(peers, null, 2) : formatPeerTable(peers));
    return 0;
  },
};

export const peerAddCommand: Command = {
  name: "peer add",
  summary: "add a peer host by the URL of its peer API",
  usage: "peer add NAME URL [--json]",
  details: "NAME must be the name in the peer's certificate (its name in the cluster): a peer presenting another is refused.",
  options: [json],
  async run(ctx) {
    const [name, url, ...extra] = ctx.args.positionals;
    if (!name || !url || extra.length) throw new InvalidArgumentError("Expected NAME and URL, like: peer add beta https://10.213.0.12:7443");
    const p = await (await clientFor(ctx)).addPeer(name, url);
    ctx.out(
      flagBool(ctx.args, "json")
        ? JSON.stringify(p, null, 2)
        : `added peer "${p.name}" at ${p.url}: ${p.reachable ? `up, ${p.rttMs} ms` : `not reachable now (${p.error})`}`,
    );
    return 0;
  },
};

export const peerRmCommand: Command = {
  name: "peer rm",
  summary: "forget a peer",
  usage: "peer rm NAME",
  options: [],
  async run(ctx) {
    const [name, ...extra] = ctx.args.positionals;
    if (!name || extra.length) throw new InvalidArgumentError("Expected one peer NAME");
    await (await clientFor(ctx)).removePeer(name);
    ctx.out(`removed peer "${name}"`);
    return 0;
  },
};
