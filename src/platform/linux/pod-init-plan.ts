/**
 * What `__pod-init` is told to build, written as JSON by the launcher. Host
 * paths unless said otherwise. Kept apart from pod-init.ts so the agent can
 * use it without loading libc.
 */
export interface PodInitPlan {
  hostname: string;
  root: { kind: "overlay"; mountpoint: string; lower: string; upper: string; work: string } | { kind: "copy"; mountpoint: string };
  volumes: Array<{ host: string; pod: string; readonly: boolean; isFile: boolean }>;
  /** In the pod. */
  workdir: string;
  /** argv; argv[0] is looked up on the pod's PATH when it has no slash. */
  cmd: string[];
  /** "KEY=VALUE" entries. */
  env: string[];
  /** In the pod: where stdout and stderr go. */
  logPath: string;
  /** Run the command as this user (gid null: the uid's group in the pod's /etc/passwd, else 0); absent: root. */
  user?: { uid: number; gid: number | null; isHomeSet: boolean };
}

/** Host device nodes bound into the pod's /dev. */
export const DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"] as const;

/**
 * The pod's log, as the pod sees it. It lives in the pod's own file system (so
 * it travels with a checkpoint, and CRIU finds its mount), at the top so no
 * symlink of the base can move it.
 */
export const POD_LOG_PATH = "/.autopod/pod.log";

/** pod-init's report lines on its close-on-exec copy of stderr. */
export const REPORT_PID = "autopod-pod-init: pid ";
export const REPORT_ERROR = "autopod-pod-init: error ";

/**
 * Capabilities the pod's command keeps (Docker's default set, less MKNOD: with
 * no device cgroup, a device node could reach the host's disks). The others
 * leave the bounding set, so no process of the pod can get them back.
 */
export const KEPT_CAPABILITIES: Record<string, number> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  NET_BIND_SERVICE: 10,
  NET_RAW: 13,
  SYS_CHROOT: 18,
  AUDIT_WRITE: 29,
  SETFCAP: 31,
};
