import { z } from "zod";
import { DEFAULT_CONFIG_PATH, DEFAULT_SOCKET, isCleanAbsolutePath } from "./paths.ts";

const ipv4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const cidr = z.string().refine((s) => {
  const [ip, len, ...more] = s.split("/");
  return more.length === 0 && ip !== undefined && ipv4.test(ip) && len !== undefined && /^\d+$/.test(len) && +len >= 8 && +len <= 30;
}, "an IPv4 subnet like 10.213.0.0/24 (prefix 8 to 30)");
const absPath = z.string().refine(isCleanAbsolutePath, "an absolute path without '..'");
const ifName = z
  .string()
  .regex(/^[a-zA-Z0-9_.-]{1,15}$/, "an interface name of 1 to 15 letters, digits, '_', '.', '-'")
  .refine((s) => s !== "." && s !== "..", "an interface name, not '.' or '..'");
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, "HOST:PORT, like 0.0.0.0:7443");
/** A program and its arguments, run without a shell. */
const argv = z
  .array(
    z
      .string()
      .min(1, "a non-empty argument")
      .refine((a) => !a.includes("\0"), "an argument without NUL"),
  )
  .max(256);
const DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const timeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, "a time zone of the tz database, like UTC or Europe/Berlin");
const lockUrl = z.string().refine((u) => {
  try {
    const p = new URL(u).protocol;
    return p === "http:" || p === "https:";
  } catch {
    return false;
  }
}, "an http:// or https:// URL, like http://10.0.0.5:2379");

/** [policy]: when and how this host updates itself (docs/updates.md). */
const PolicySchema = z
  .object({
    mode: z
      .enum(["off", "notify", "evacuate", "evacuate-update-reboot"])
      .default("off")
      .describe("off; notify (events only); evacuate (move the pods away and stop there); evacuate-update-reboot (the whole cycle)"),
    trigger: z
      .array(z.enum(["security", "any-updates", "reboot-required"]))
      .min(1, "at least one trigger")
      .default(["security", "reboot-required"])
      .describe("what makes the host act: security updates, any updates, a required reboot (any combination)"),
    time_zone: timeZone.default("UTC").describe("time zone of the windows' days and start times"),
    window: z
      .array(
        z
          .object({
            days: z
              .array(z.string().refine((d) => DAY_NAMES.includes(d.toLowerCase()), "a weekday, like Mon or Monday"))
              .min(1, "at least one day: a window without days never opens")
              .max(7),
            start_time: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "a time of day HH:MM, like 22:30"),
            length_minutes: z.number().int().min(1, "at least 1: a window of no length never opens").max(10080),
          })
          .strict(),
      )
      .max(64)
      .default([])
      .describe("when the cycle may run ([[policy.window]]: days, start_time, length_minutes); none means at any time"),
    update_command: argv.default([]).describe("the distribution's update, as a program and its arguments (no shell); empty skips the update step"),
    reboot_command: argv.min(1, "a program to run").default(["systemctl", "reboot"]).describe("how to reboot, as a program and its arguments"),
    blockers: z.array(argv.min(1, "a program to run")).max(32).default([]).describe("commands whose non-zero exit holds the cycle back"),
    return: z.boolean().default(true).describe("bring the pods home after the reboot"),
    check_seconds: z.number().int().min(1).max(3600).default(60).describe("how often the agent looks whether the cycle should run"),
    retry_seconds: z.number().int().min(1).max(604800).default(3600).describe("after a failed cycle, wait this long before trying again"),
    command_timeout_seconds: z.number().int().min(1).max(86400).default(3600).describe("kill an update or blocker command that runs longer"),
    reboot_timeout_seconds: z
      .number()
      .int()
      .min(1)
      .max(86400)
      .default(900)
      .describe("a reboot command that returns but leaves this agent running this long has failed"),
    test_clock_file: z
      .union([absPath, z.literal("")])
      .default("")
      .describe("for tests only: the windows read the time from this file (ISO 8601), advancing from the file's change"),
    test_evacuator_file: z
      .union([absPath, z.literal("")])
      .default("")
      .describe("for tests only: a fake evacuator that moves nothing, reports the pods as migrated and records each call in this file"),
    lock: z
      .object({
        kind: z.enum(["none", "etcd", "fleetlock"]).default("none").describe("the fleet lock: none (a single host), etcd (v3 JSON gateway) or fleetlock"),
        endpoints: z.array(lockUrl).max(16).default([]).describe("etcd members' client URLs, or FleetLock base URLs, tried in turn"),
        group: z
          .string()
          .regex(/^[a-zA-Z0-9.-]{1,64}$/, "letters, digits, '.' and '-' (FleetLock's group)")
          .default("default")
          .describe("hosts of one group share its slots"),
        slots: z.number().int().min(1).max(1000).default(1).describe("how many hosts of the group may hold the lock at once (etcd)"),
        ttl: z
          .number()
          .int()
          .min(5)
          .max(86400)
          .default(900)
          .describe("seconds an etcd lock outlives its holder: longer than a reboot, so the lock is held through it"),
        id: z
          .string()
          .regex(/^[a-zA-Z0-9._-]{0,128}$/, "letters, digits, '.', '_' and '-'")
          .default("")
          .describe("this host's name in the lock; empty means the cluster host name, else the machine's host name"),
      })
      .strict()
      .superRefine((l, ctx) => {
        if (l.kind !== "none" && l.endpoints.length === 0)
          ctx.addIssue({ code: "custom", path: ["endpoints"], message: `at least one endpoint URL for lock kind "${l.kind}"` });
      })
      .prefault({}),
  })
  .strict()
  .prefault({});

/**
 * The configuration: the single source of truth for its keys, defaults and
 * validation. File: /etc/autopod/autopod.toml; then AUTOPOD_<SECTION>_<KEY>
 * environment variables (AUTOPOD_<KEY> for top-level keys); then flags.
 */
export const ConfigSchema = z
  .object({
    state_dir: absPath.default("/var/lib/autopod").describe("where pods, images and chunks live"),
    socket: absPath.default(DEFAULT_SOCKET).describe("the local API's unix socket"),
    log_level: z.enum(["debug", "info", "warn", "error"]).default("info").describe("log verbosity"),
    criu: z.string().default("").describe("path of the criu binary; empty means search /usr/local/sbin, then PATH"),
    network: z
      .object({
        mode: z
          .enum(["bridge", "routed"])
          .default("bridge")
          .describe(
            "bridge: the pods of this host on a local bridge and subnet; routed: one pod subnet across the cluster, each pod's /32 routed on the host that runs it and proxy-ARPed on the LAN (see docs/cluster.md)",
          ),
        bridge: ifName.default("autopod0").describe("host bridge the pods attach to (bridge mode)"),
        subnet: cidr
          .default("10.213.0.0/24")
          .describe(
            "pod addresses come from here; in bridge mode the bridge takes the first; in routed mode the same on every host of the cluster, a range the LAN's clients reach through the hosts (e.g. an unused part of the LAN's own subnet)",
          ),
        lan_interface: z
          .union([ifName, z.literal("")])
          .default("")
          .describe("routed mode: the host's uplink to the LAN, where it answers ARP for its pods and announces them"),
        nat: z.boolean().default(false).describe("masquerade pods' outbound traffic (bridge mode)"),
      })
      .strict()
      .superRefine((n, ctx) => {
        if (n.mode !== "routed") return;
        if (n.lan_interface === "") ctx.addIssue({ code: "custom", path: ["lan_interface"], message: "routed mode needs the host's LAN interface, like lan0" });
        if (n.nat) ctx.addIssue({ code: "custom", path: ["nat"], message: "routed mode gives pods addresses the LAN reaches: nat is for bridge mode only" });
      })
      .prefault({}),
    pods: z
      .object({
        layer: z
          .enum(["overlay", "copy"])
          .default("overlay")
          .describe("a pod's writable root: an overlay over its base, or a private copy (where overlayfs cannot be used)"),
      })
      .strict()
      .prefault({}),
    cpu: z
      .object({
        baseline: z
          .boolean()
          .default(true)
          .describe(
            "new pods start with only the CPU features every cluster member has (glibc.cpu.hwcaps), so they restore on any member; false lets them use all of this host's (set it on every host to turn the baseline off for the cluster; `run --cpu-baseline=off` does it for one pod)",
          ),
        flags_mask: z
          .array(z.string().regex(/^[a-z0-9_]{1,64}$/, "a /proc/cpuinfo flag, like avx2"))
          .max(1024)
          .default([])
          .describe("for tests only: /proc/cpuinfo flags this agent acts as if its CPU lacked (in its peer info, the baseline and restore checks)"),
      })
      .strict()
      .prefault({}),
    peer: z
      .object({
        listen: hostPort.default("0.0.0.0:7443").describe("peer API address"),
        tls_dir: z.string().default("").describe("cluster CA, certificate and key; empty means <state_dir>/tls"),
        peers: z.array(z.string()).default([]).describe("peer addresses, HOST:PORT"),
      })
      .strict()
      .prefault({}),
    store: z
      .object({
        hash_threads: z
          .number()
          .int()
          .min(0)
          .max(256)
          .default(0)
          .describe("threads that hash and copy chunks (checkpoint, restore, import); 0 means one per CPU, at most 4"),
        native_hash: z
          .boolean()
          .default(true)
          .describe(
            "hash 16 pages at a time with the native SHA-256 where the CPU has AVX-512 or the SHA extensions; false hashes with Bun's alone (same digests; for benchmarks)",
          ),
      })
      .strict()
      .prefault({}),
    checkpoint: z
      .object({
        page_tail: z.boolean().default(true).describe("hash memory pages while CRIU writes them; false hashes them after the dump (slower; for benchmarks)"),
      })
      .strict()
      .prefault({}),
    policy: PolicySchema,
    status: z
      .object({
        refresh_seconds: z.number().int().min(60).max(86400).default(3600).describe("how often the agent refreshes the patch status"),
        lock_timeout_seconds: z.number().min(0.1).max(600).default(10).describe("give up waiting for the package manager's lock after this"),
        root: absPath
          .default("/")
          .describe("root of the system the status checks inspect (package databases, /boot, /run); /proc and /sys are always the running system's"),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type PolicyConfig = Config["policy"];

/**
 * Older environment variable names that still set a key, after its
 * AUTOPOD_<SECTION>_<KEY> (which wins when both are set). Tests and
 * benchmarks use these.
 */
export const ENV_ALIASES: Readonly<Record<string, string>> = {
  "store.hash_threads": "AUTOPOD_HASH_THREADS",
  "store.native_hash": "AUTOPOD_NATIVE_HASH",
  "checkpoint.page_tail": "AUTOPOD_PAGE_TAIL",
};

export { DEFAULT_CONFIG_PATH };
