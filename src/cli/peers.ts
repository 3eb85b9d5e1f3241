import type { PeerStatus } from "../api/peer/peer-directory.ts";
import type { ClusterCpuView } from "../cluster/cluster-cpu.ts";
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

/** What new pods here start with, and why: the features some member lacks, and members whose CPU is unknown. */
export function formatCpuBaseline(cpu: ClusterCpuView): string {
  const lines: string[] = [];
  const hidden = cpu.hidden.length ? `glibc.cpu.hwcaps=${cpu.hidden.map((h) => `-${h}`).join(",")}` : "all of this host's CPU features (every member has them)";
  const known = cpu.members.filter((m) => m.seenAt !== null).length;
  lines.push(
    cpu.isBaselineOn
      ? `CPU baseline (this host and ${known} peer${known === 1 ? "" : "s"}): new pods start with ${hidden}`
      : `CPU baseline: off (cpu.baseline = false): new pods may use all of this host's CPU features${cpu.hidden.length ? `; the baseline would be ${hidden}` : ""}`,
  );
  for (const m of cpu.members) {
    if (m.seenAt === null) lines.push(`  ${m.name}: CPU never seen (unreachable since it was added): not in the baseline`);
    else if (m.lacks.length) lines.push(`  ${m.name} lacks ${m.lacks.join(", ")} (as of ${m.seenAt})`);
    if (m.unhideable.length)
      lines.push(`  ${m.name} lacks ${m.unhideable.join(", ")}, which glibc cannot hide: images of pods started here do not restore there`);
  }
  return lines.join("\n");
}

export const peersCommand: Command = {
  name: "peers",
  summary: "list peers: reachability, round trip, version, CRIU, kernel, free memory and disk, pods, patch verdict; the CPU baseline",
  usage: "peers [--json]",
  details: [
    "The CPU baseline is what every member's CPU has: new pods start with glibc's code for it only",
    "(GLIBC_TUNABLES=glibc.cpu.hwcaps=-...), so their images restore on any member. A peer that",
    "cannot be reached counts with the CPU it last reported; one never reached is left out.",
    "--json prints { peers: [...], cpu: { isBaselineOn, hostFlags, baseline, hidden, members } }.",
  ].join("\n"),
  options: [json],
  async run(ctx) {
    const { peers, cpu } = await (await clientFor(ctx)).peers();
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify({ peers, cpu }, null, 2) : `${formatPeerTable(peers)}\n${formatCpuBaseline(cpu)}`);
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
