/**
 * /proc/PID/cgroup: which systemd unit or autopod pod a process belongs to.
 * Works on cgroup v2 ("0::/system.slice/ssh.service"), and on v1 and hybrid
 * hosts through the name=systemd hierarchy and, for pods, the memory one.
 */

export interface ProcessGroup {
  /** The innermost systemd unit: "nginx.service", "session-3.scope". */
  unit?: string;
  /** The autopod pod, from the <hierarchy>/autopod/<agent>/<pod> cgroup pods live in. */
  pod?: string;
}

const UNIT = /\.(service|scope)$/;
const POD = /(?:^|\/)autopod\/[^/]+\/([^/]+)/;

export function parseProcessCgroup(text: string): ProcessGroup {
  const paths = new Map<string, string>(); // controllers -> path
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (m) paths.set(m[1]!, m[2]!);
  }
  const group: ProcessGroup = {};
  for (const path of paths.values()) {
    const pod = POD.exec(path)?.[1];
    if (pod) {
      group.pod = pod;
      break;
    }
  }
  const systemdPath = paths.get("") ?? paths.get("name=systemd");
  const unitPath = systemdPath && systemdPath !== "/" ? systemdPath : paths.get("name=systemd");
  const unit = unitPath
    ?.split("/")
    .reverse()
    .find((c) => UNIT.test(c));
  if (unit) group.unit = unit;
  return group;
}
