import { formatBytes, type PodView } from "../pods/pod.ts";
import { clientFor } from "./_client.ts";
import { escapeCell } from "./escape.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

/** "42s", "3m05s", "2h07m", "3d04h". */
export function formatUptime(seconds: number | null): string {
  if (seconds === null) return "-";
  const pad = (n: number) => String(n).padStart(2, "0");
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${pad(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${pad(Math.floor(seconds / 60) % 60)}m`;
  return `${Math.floor(seconds / 86400)}d${pad(Math.floor(seconds / 3600) % 24)}h`;
}

/** CPU time used: "0.42s", "12.3s", "2m05s". */
export function formatCpuSeconds(s: number): string {
  if (s < 10) return `${s.toFixed(2)}s`;
  if (s < 60) return `${s.toFixed(1)}s`;
  return formatUptime(Math.round(s));
}

export function formatPodTable(pods: PodView[]): string {
  const rows = [["NAME", "STATE", "PID", "ADDRESS", "UPTIME", "MEMORY", "CPU", "PIDS", "ROOTFS", "NOTE"]];
  for (const p of pods) {
    const mem = p.memoryBytes === null ? "-" : formatBytes(p.memoryBytes) + (p.memoryLimitBytes ? ` / ${formatBytes(p.memoryLimitBytes)}` : "");
    const cpu = p.cpuSeconds == null ? "-" : `${formatCpuSeconds(p.cpuSeconds)}${p.cpuLimit ? ` / ${p.cpuLimit} cpu` : ""}`;
    const pids = p.pids == null ? "-" : `${p.pids}${p.pidsLimit ? ` / ${p.pidsLimit}` : ""}`;
    rows.push(
      [p.name, p.state, p.pid === null ? "-" : String(p.pid), p.address, formatUptime(p.uptimeSeconds), mem, cpu, pids, p.rootfs, p.reason ?? ""].map(
        escapeCell,
      ),
    );
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export const psCommand: Command = {
  name: "ps",
  summary: "list pods: state, pid, address, uptime, memory, CPU time, processes",
  usage: "ps [--json]",
  details:
    "STATE is running, stopped, exited(CODE) (128+N when signal N ended it), or checkpointed. PID is the host pid of the pod's pid 1. " +
    "MEMORY, CPU (time used) and PIDS (processes and threads) are what the pod's cgroup holds now, with its limits (--memory, --cpus, --pids-max). " +
    "NOTE says why a pod ended when it was not a plain exit (for example OOM-killed).",
  options: [{ name: "json", kind: "boolean", help: "print JSON" }],
  async run(ctx) {
    const pods = await (await clientFor(ctx)).listPods();
    ctx.out(flagBool(ctx.args, "json") ? JSON.stringify(pods, null, 2) : formatPodTable(pods));
    return 0;
  },
};
