/** What this host tells its peers about itself (the peer API's `info`). */
import { readFileSync, statfsSync } from "node:fs";
import { arch, release } from "node:os";
import type { PeerInfo } from "../api/peer/schemas.ts";
import type { Checkpointer } from "../checkpoint/checkpointer.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { PreconditionError } from "../errors.ts";
import type { PodRuntime } from "../pods/runtime.ts";
import type { StatusService } from "../status/index.ts";
import { VERSION } from "../version.ts";

export function peerInfoProvider(d: {
  cluster: Cluster;
  pods: PodRuntime;
  checkpointer: Checkpointer;
  status: StatusService;
  stateDir: string;
  /** This host's CPU flags (less any test-only mask). */
  cpuFlags: readonly string[];
}): () => Promise<PeerInfo> {
  const flags = [...d.cpuFlags];
  return async () => {
    const id = d.cluster.identity;
    if (!id) throw new PreconditionError("This host is not in a cluster");
    const criu = await d.checkpointer.criu().then(
      (c) => c.version,
      () => null,
    );
    const fs = statfsSync(d.stateDir);
    return {
      cluster: id.cluster,
      host: id.host,
      version: VERSION,
      criu,
      kernel: release(),
      arch: arch(),
      cpuFlags: flags,
      memory: meminfo(),
      disk: { freeBytes: Number(fs.bavail) * Number(fs.bsize) },
      pods: d.pods.list().map((p) => ({ name: p.name, state: p.state, address: p.address || null })),
      verdict: d.status.snapshot().report?.verdict ?? null,
      revocationListTime: id.crlTime.toISOString(),
    };
  };
}

function meminfo(): { totalBytes: number; availableBytes: number } {
  const text = readFileSync("/proc/meminfo", "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { totalBytes: kb("MemTotal"), availableBytes: kb("MemAvailable") };
}
