import { z } from "zod";

const ipv4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const cidr = z.string().refine((s) => {
  const [ip, len, ...more] = s.split("/");
  return more.length === 0 && ip !== undefined && ipv4.test(ip) && len !== undefined && /^\d+$/.test(len) && +len >= 8 && +len <= 30;
}, "an IPv4 subnet like 10.213.0.0/24 (prefix 8 to 30)");
const absPath = z.string().refine((s) => s.startsWith("/") && !s.split("/").includes(".."), "an absolute path without '..'");
const ifName = z
  .string()
  .regex(/^[a-zA-Z0-9_.-]{1,15}$/, "an interface name of 1 to 15 letters, digits, '_', '.', '-'")
  .refine((s) => s !== "." && s !== "..", "an interface name, not '.' or '..'");
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, "HOST:PORT, like 0.0.0.0:7443");

/**
 * The configuration: the single source of truth for its keys, defaults and
 * validation. File: /etc/autopod/autopod.toml; then AUTOPOD_<SECTION>_<KEY>
 * environment variables (AUTOPOD_<KEY> for top-level keys); then flags.
 */
export const ConfigSchema = z
  .object({
    state_dir: absPath.default("/var/lib/autopod").describe("where pods, images and chunks live"),
    socket: absPath.default("/run/autopod/autopod.sock").describe("the local API's unix socket"),
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
            "hash 16 pages at a time with the native AVX-512 SHA-256 where the CPU has it; false hashes with Bun's alone (same digests; for benchmarks)",
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

export const DEFAULT_CONFIG_PATH = "/etc/autopod/autopod.toml";
