/**
 * After `criu dump --leave-stopped`, the pod's TCP connections stay in repair
 * mode: CRIU takes them out only when it resumes the tasks itself
 * (--leave-running) or its dump fails. A pod continued after such a dump (a
 * --leave-running checkpoint, an undone checkpoint, an aborted migration)
 * would keep sockets that neither send nor answer, and its clients would
 * time out. So before the tasks continue, each of their TCP sockets that is
 * not listening is taken out of repair mode, as CRIU would (tcpRepairOff).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { type TcpEnds, tcpRepairOff } from "./libc.ts";

/** TCP states in /proc/net/tcp that CRIU never puts in repair mode: LISTEN (0A) and CLOSE (07). */
const UNREPAIRED_STATES = new Set(["0A", "07"]);

/** Socket inodes of /proc/PID/net/tcp or tcp6 text, with their state (hex, as the kernel writes it). */
export function parseProcNetTcp(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    out.set(f[9]!, f[3]!.toUpperCase());
  }
  return out;
}

/** Take every connected TCP socket of these (stopped) processes out of repair mode; returns the IPv4 ones' ends. */
export function leaveTcpRepair(pids: readonly number[], proc = "/proc"): TcpEnds[] {
  const out: TcpEnds[] = [];
  const seen = new Set<string>();
  for (const pid of pids) {
    let tcp: Map<string, string>;
    let fds: string[];
    try {
      tcp = new Map([...parseProcNetTcp(readFileSync(`${proc}/${pid}/net/tcp`, "utf8")), ...parseProcNetTcp(readFileSync(`${proc}/${pid}/net/tcp6`, "utf8"))]);
      fds = readdirSync(`${proc}/${pid}/fd`);
    } catch {
      continue; // gone meanwhile
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${proc}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (!inode || seen.has(inode)) continue;
      const state = tcp.get(inode);
      if (state === undefined || UNREPAIRED_STATES.has(state)) continue;
      seen.add(inode);
      try {
        const ends = tcpRepairOff(pid, Number(fd));
        if (ends) out.push(ends);
      } catch {
        // closed meanwhile, or not a socket any more
      }
    }
  }
  return out;
}
