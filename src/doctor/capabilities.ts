import type { DoctorCheck } from "./doctor.ts";

/** A capability autopod or CRIU uses: its bit in CapEff, and what fails without it. */
export interface NeededCapability {
  name: string;
  bit: bigint;
  /** Without it the host cannot run pods at all (else only some pods or features fail). */
  isRequired: boolean;
  /** What it is needed for. */
  purpose: string;
  /** What fails without it. */
  without: string;
}

export const NEEDED_CAPABILITIES: readonly NeededCapability[] = [
  {
    name: "CAP_SYS_ADMIN",
    bit: 21n,
    isRequired: true,
    purpose: "namespaces, mounts and pivot_root for pods; CRIU's dump and restore",
    without: "no pod starts, and CRIU can neither dump nor restore",
  },
  {
    name: "CAP_SYS_PTRACE",
    bit: 19n,
    isRequired: true,
    purpose: "CRIU seizes the pod's processes to dump them",
    without: "every checkpoint fails",
  },
  {
    name: "CAP_NET_ADMIN",
    bit: 12n,
    isRequired: true,
    purpose: "the pod network (veths, bridge, routes), CRIU's nftables network lock and TCP repair mode",
    without: "no pod gets a network, and TCP connections cannot be checkpointed",
  },
  {
    name: "CAP_SETUID",
    bit: 7n,
    isRequired: true,
    purpose: "CRIU restores each process's uids; `run --user` starts a pod's command as its user",
    without: "pods whose processes run as other users cannot be restored or started with --user",
  },
  {
    name: "CAP_SETGID",
    bit: 6n,
    isRequired: true,
    purpose: "CRIU restores each process's gids and supplementary groups; `run --user` sets them",
    without: "pods whose processes run as other groups cannot be restored or started with --user",
  },
  {
    name: "CAP_DAC_OVERRIDE",
    bit: 1n,
    isRequired: true,
    purpose: "reading and writing the files of every user in pod roots, volumes and /proc",
    without: "files that belong to a pod's users cannot be checkpointed or restored",
  },
  {
    name: "CAP_CHOWN",
    bit: 0n,
    isRequired: true,
    purpose: "restoring the owner of each file in a pod's writable layer",
    without: "files of a pod's users come back owned by root, and the service cannot write them",
  },
  {
    name: "CAP_FOWNER",
    bit: 3n,
    isRequired: true,
    purpose: "restoring modes and times of files that other users own",
    without: "restored files of a pod's users keep wrong modes and times",
  },
  {
    name: "CAP_KILL",
    bit: 5n,
    isRequired: true,
    purpose: "stopping pods whose processes run as other users",
    without: "`stop` and `rm` cannot end such processes",
  },
  {
    name: "CAP_SYS_RESOURCE",
    bit: 24n,
    isRequired: false,
    purpose: "CRIU reads another user's resource limits with prlimit64(), and sizes page-server pipes above fs.pipe-max-size",
    without:
      'CRIU cannot read the resource limits of a process of another user, so a pod running a service that dropped root fails to dump ("Can\'t get rlimit 0: Operation not permitted"); lazy (post-copy) restores need fs.pipe-max-size raised',
  },
  {
    name: "CAP_CHECKPOINT_RESTORE",
    bit: 40n,
    isRequired: false,
    purpose: "CRIU's narrower alternative to CAP_SYS_ADMIN (Linux >= 5.9)",
    without: "nothing, as long as CAP_SYS_ADMIN is present",
  },
];

/** Effective capabilities from /proc/self/status. */
export function parseCapEff(status: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt("0x" + m[1]) : null;
}

/** How CRIU is built: whether it carries autopod's patches (null when there is no CRIU to ask). */
export interface CriuBuild {
  path: string;
  gitId: string | null;
  isPatched: boolean;
}

/** Whether the capability set lacks `cap` (CAP_CHECKPOINT_RESTORE is not lacking where CAP_SYS_ADMIN covers it). */
export function isLacking(capEff: bigint, cap: NeededCapability): boolean {
  const has = (bit: bigint) => (capEff & (1n << bit)) !== 0n;
  if (has(cap.bit)) return false;
  return !(cap.name === "CAP_CHECKPOINT_RESTORE" && has(21n));
}

/** A check for each needed capability the set lacks: what fails without it, and whether the carried CRIU works around it. */
export function capabilityChecks(capEff: bigint, criu: CriuBuild | null, installCommand: string): DoctorCheck[] {
  return NEEDED_CAPABILITIES.filter((cap) => isLacking(capEff, cap)).map((cap): DoctorCheck => {
    const id = cap.name.toLowerCase();
    if (cap.name === "CAP_SYS_RESOURCE") {
      if (criu?.isPatched) {
        return {
          id,
          title: cap.name,
          status: "warn",
          required: false,
          detail: `missing: ${cap.without}. The carried CRIU (${criu.path}, GitID ${criu.gitId}) works around the dump: it reads /proc/PID/limits when prlimit64() is refused, so pods whose processes run as other users checkpoint`,
        };
      }
      return {
        id,
        title: cap.name,
        status: "fail",
        required: false,
        detail: `missing: ${cap.without}. ${criu ? `${criu.path} (GitID ${criu.gitId ?? "none"}) lacks autopod's CRIU patches, which read /proc/PID/limits instead` : "no CRIU found"}`,
        fix: `install CRIU with autopod's patches: ${installCommand}; or give autopod CAP_SYS_RESOURCE`,
      };
    }
    return {
      id,
      title: cap.name,
      status: "fail",
      required: cap.isRequired,
      detail: `missing: ${cap.without} (needed for ${cap.purpose})`,
      fix: "run the agent as root with its full capability set (no capability bounding in its unit or container)",
    };
  });
}
