/**
 * Our own network lock for a pod's net namespace: drop every packet in and
 * out, so killing a checkpointed pod's processes sends no RST to its peers
 * (their connections resume when the pod is restored). CRIU's own
 * `--network-lock nftables` does the same while it dumps. Through nf_tables'
 * netlink (nft-netlink.ts: no process, this is in a migration's freeze); the
 * nft program when that fails.
 */
import { run, which } from "./exec.ts";
import { deleteTablesNetlink, listTablesNetlink, lockNetworkNetlink } from "./nft-netlink.ts";

const TABLE = "autopod-lock";
const RULESET = `table inet ${TABLE} {
  chain input { type filter hook input priority -1000; policy drop; }
  chain output { type filter hook output priority -1000; policy drop; }
}
`;

function tools(): { nsenter: string; nft: string } {
  const nsenter = which("nsenter");
  const nft = which("nft");
  if (!nsenter || !nft) throw new Error("nsenter and nft are needed to lock a pod's network (apt-get install util-linux nftables)");
  return { nsenter, nft };
}

export async function lockNetwork(netnsPath: string): Promise<void> {
  try {
    return lockNetworkNetlink(netnsPath, TABLE);
  } catch {
    // No nf_tables netlink here (or it refused): nft says why, or manages.
  }
  const { nsenter, nft } = tools();
  const r = await run([nsenter, `--net=${netnsPath}`, "--", nft, "-f", "-"], { stdin: RULESET, timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new Error(`Cannot lock the network of ${netnsPath}: ${r.stderr.trim()}`);
}

export async function unlockNetwork(netnsPath: string): Promise<void> {
  try {
    return deleteTablesNetlink(netnsPath, [{ family: "inet", name: TABLE }]);
  } catch {
    // as above
  }
  const { nsenter, nft } = tools();
  await run([nsenter, `--net=${netnsPath}`, "--", nft, "delete", "table", "inet", TABLE], { timeoutMs: 10_000 });
}

/**
 * Why this kernel cannot hold a network lock, or null: nf_tables is asked over
 * netlink for the agent's own namespace's tables (no process: this is in a
 * restore's checks), and, when that fails, `nft list tables` says why (the
 * kernel loads nf_tables on demand when it is a module it has). `nft` is still
 * needed: it is the lock's fallback, and it removes a lock CRIU left behind.
 */
export async function whyNoNftables(): Promise<string | null> {
  const nft = which("nft");
  if (!nft) return "nft is not installed (Debian's nftables package), and the pod's network lock needs it";
  try {
    listTablesNetlink("/proc/self/ns/net");
    return null;
  } catch {
    // nft says why
  }
  const r = await run([nft, "list", "tables"], { timeoutMs: 10_000 });
  if (r.exitCode === 0) return null;
  return `this kernel has no nftables (\`nft list tables\`: ${r.stderr.trim().split("\n")[0] || `exit ${r.exitCode}`}), which the pod's network lock and CRIU's need: load the nf_tables module (modprobe nf_tables) or use a kernel built with it`;
}
