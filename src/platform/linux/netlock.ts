/**
 * Our own network lock for a pod's net namespace: drop every packet in and
 * out, so killing a checkpointed pod's processes sends no RST to its peers
 * (their connections resume when the pod is restored). CRIU's own
 * `--network-lock nftables` does the same while it dumps. The table is made
 * and removed through nf_tables' netlink interface (nft-netlink.ts): no
 * process is started on a restore's path.
 */
import { which } from "./exec.ts";
import { addDropTableIn, deleteTableIn, whyNoNfTables } from "./nft-netlink.ts";

const TABLE = "autopod-lock";
/** `table inet autopod-lock { chain input { type filter hook input priority -1000; policy drop; } chain output { ... } }` */
const CHAINS = [
  { name: "input", hook: "input", priority: -1000 },
  { name: "output", hook: "output", priority: -1000 },
] as const;

export async function lockNetwork(netnsPath: string): Promise<void> {
  try {
    addDropTableIn(netnsPath, TABLE, CHAINS);
  } catch (e) {
    throw new Error(`Cannot lock the network of ${netnsPath}: ${(e as Error).message}`);
  }
}

/** Lift the lock; a namespace without it (or gone) is fine. */
export async function unlockNetwork(netnsPath: string): Promise<void> {
  try {
    deleteTableIn(netnsPath, TABLE);
  } catch {
    // as `nft delete table` was: ignored (the namespace may be gone meanwhile)
  }
}

/**
 * Why this kernel cannot hold a network lock, or null: nf_tables is asked over
 * netlink (the kernel loads it on demand when it is a module it has). `nft`
 * is still needed: it removes a lock CRIU leaves behind after a failure.
 */
export async function whyNoNftables(): Promise<string | null> {
  if (!which("nft")) return "nft is not installed (Debian's nftables package), and the pod's network lock needs it";
  const why = whyNoNfTables();
  if (why === null) return null;
  return `this kernel has no nftables (${why}), which the pod's network lock and CRIU's need: load the nf_tables module (modprobe nf_tables) or use a kernel built with it`;
}
