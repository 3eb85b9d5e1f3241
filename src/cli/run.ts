import { resolve } from "node:path";
import { InvalidArgumentError } from "../errors.ts";
import { parsePodUser, parseSize, type VolumeSpec } from "../pods/pod.ts";
import { clientFor } from "./_client.ts";
import { flagList, flagString } from "./args.ts";
import type { Command } from "./command.ts";

/** "HOST:POD[:ro|:rw]", with HOST made absolute from the caller's directory. */
export function parseVolume(s: string, cwd: string): VolumeSpec {
  const parts = s.split(":");
  let readonly = false;
  if (parts.length === 3 && (parts[2] === "ro" || parts[2] === "rw")) {
    readonly = parts.pop() === "ro";
  }
  const [host, pod] = parts;
  if (parts.length !== 2 || !host || !pod) throw new InvalidArgumentError(`Invalid volume "${s}": expected HOSTDIR:PODDIR[:ro]`);
  return { host: resolve(cwd, host), pod, readonly };
}

/** "KEY=VALUE" entries into an object; the value may hold "=". */
export function parseEnv(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const eq = e.indexOf("=");
    if (eq <= 0) throw new InvalidArgumentError(`Invalid environment entry "${e}": expected KEY=VALUE`);
    env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return env;
}

/** --cpu-baseline: on, off, or not given. */
export function parseCpuBaseline(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === "on" || v === "off") return v === "on";
  throw new InvalidArgumentError(`Invalid --cpu-baseline "${v}": expected on or off`);
}

/** A numeric flag's value, or null when absent; its shape is checked here, its range by the agent. */
function parseNumberFlag(args: Parameters<typeof flagString>[0], name: string, shape: RegExp, what: string): number | null {
  const v = flagString(args, name);
  if (v === undefined) return null;
  if (!shape.test(v)) throw new InvalidArgumentError(`Invalid --${name} "${v}": expected ${what}`);
  return Number(v);
}

export const runCommand: Command = {
  name: "run",
  summary: "start a pod and return once its command runs",
  usage: "run NAME --rootfs DIR [options] -- CMD [ARGS...]",
  details: [
    "The pod gets its own pid, mount, uts, ipc and net namespaces. CMD is its pid 1. Its root is",
    "DIR, read-only, under a writable layer of the pod's own; stdout and stderr go to its log",
    "(`autopod logs NAME`). Its address comes from --ip or the agent's pod subnet. --memory, --cpus and",
    "--pids-max limit it through its cgroup; the limits go with it through checkpoint and restore.",
    "In a cluster it starts with the CPU features every member has (see `autopod peers`), so its",
    "images restore on any member; --cpu-baseline=off lets it use all of this host's, and its images",
    "then restore only on hosts that have them.",
  ].join("\n"),
  options: [
    { name: "rootfs", kind: "string", value: "DIR", help: "the pod's base root file system (never modified)" },
    { name: "ip", kind: "string", value: "ADDR/PREFIX", help: "the pod's address (default: the next free one of the pod subnet)" },
    { name: "hostname", kind: "string", value: "H", help: "the pod's hostname (default: NAME)" },
    { name: "volume", short: "v", kind: "repeat", value: "HOSTDIR:PODDIR[:ro]", help: "bind a host directory or file into the pod" },
    { name: "env", short: "e", kind: "repeat", value: "KEY=VALUE", help: "set an environment variable" },
    { name: "memory", short: "m", kind: "string", value: "SIZE", help: "memory limit, e.g. 256m or 1g (at least 8m); the pod is killed above it" },
    { name: "cpus", kind: "string", value: "N", help: "CPU limit in CPUs, e.g. 0.5 or 2 (cgroup cpu quota per 100 ms)" },
    { name: "pids-max", kind: "string", value: "N", help: "at most N processes and threads in the pod (at least 4)" },
    { name: "workdir", short: "w", kind: "string", value: "DIR", help: "working directory in the pod (default /)" },
    { name: "cpu-baseline", kind: "string", value: "on|off", help: "on (default): only the CPU features every cluster member has; off: all of this host's" },
    {
      name: "user",
      short: "u",
      kind: "string",
      value: "UID[:GID]",
      help: "run CMD as this user, without capabilities (group default: the uid's in the pod's /etc/passwd, else 0; supplementary groups from its /etc/group)",
    },
  ],
  parse: { stopAfterPositionals: 1 },
  async run(ctx) {
    const { args } = ctx;
    const [name, ...extra] = args.positionals;
    if (!name) throw new InvalidArgumentError("Missing the pod's NAME");
    if (extra.length) throw new InvalidArgumentError(`Unexpected argument "${extra[0]}" (put the command after --)`);
    const rootfs = flagString(args, "rootfs");
    if (rootfs === undefined) throw new InvalidArgumentError("Missing --rootfs DIR");
    if (args.rest.length === 0) throw new InvalidArgumentError("Missing the command: autopod run NAME --rootfs DIR -- CMD [ARGS...]");
    const memory = flagString(args, "memory");
    const memoryBytes = memory === undefined ? null : parseSize(memory);
    if (memoryBytes === null && memory !== undefined) throw new InvalidArgumentError(`Invalid --memory "${memory}": expected a size like 256m or 1g`);
    const cpuBaseline = parseCpuBaseline(flagString(args, "cpu-baseline"));
    const userFlag = flagString(args, "user");
    const user = userFlag === undefined ? undefined : parsePodUser(userFlag);
    if (user === null) throw new InvalidArgumentError(`Invalid --user "${userFlag}": expected UID[:GID], numbers from 0 to 4294967294`);
    const cpus = parseNumberFlag(args, "cpus", /^\d+(\.\d+)?$/, "a number of CPUs like 0.5 or 2");
    const pidsMax = parseNumberFlag(args, "pids-max", /^\d+$/, "a whole number of processes");
    const cwd = process.cwd();
    const pod = await (await clientFor(ctx)).createPod({
      name,
      rootfs: resolve(cwd, rootfs),
      cmd: args.rest,
      address: flagString(args, "ip"),
      hostname: flagString(args, "hostname"),
      volumes: flagList(args, "volume").map((v) => parseVolume(v, cwd)),
      env: parseEnv(flagList(args, "env")),
      memoryBytes,
      cpus,
      pidsMax,
      workdir: flagString(args, "workdir"),
      ...(cpuBaseline === undefined ? {} : { cpuBaseline }),
      ...(user ? { user } : {}),
    });
    const hidden = pod.cpuHidden.length ? ` (CPU baseline: without ${pod.cpuHidden.join(", ")})` : "";
    ctx.out(`${pod.name} ${pod.state} pid ${pod.pid} address ${pod.address}${hidden}`);
    return 0;
  },
};
