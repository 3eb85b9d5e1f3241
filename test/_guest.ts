/**
 * Guests for the cross-kernel test: Debian's own kernels (fetched by
 * scripts/fetch-guest-kernels.sh into .cache/guest-kernels) booted in QEMU
 * with software emulation (TCG: KVM on these machines cannot run a stock
 * kernel), from an initramfs that holds busybox, the autopod binary, CRIU, the
 * few host programs the agent and CRIU run (ip, nft, nsenter, unshare, tar,
 * gzip) with their
 * libraries, and test/fixtures/guest-init.sh as its init. The guest reports
 * on its serial console in lines "@@xk KEY VALUE".
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { type CpioEntry, writeCpio } from "./_cpio.ts";
import { REPO } from "./_support.ts";

export const KERNELS_DIR = join(REPO, ".cache/guest-kernels");
export const GUEST_SUITES = ["bookworm", "trixie"] as const;

export interface GuestKernel {
  suite: string;
  /** Its `uname -r`. */
  release: string;
  vmlinuz: string;
  /** lib/modules/RELEASE of the modules the guest loads. */
  modules: string;
}

/** Debian's kernels, fetched with apt when missing (root only). */
export function guestKernels(): GuestKernel[] {
  const isCached = () => GUEST_SUITES.every((s) => existsSync(join(KERNELS_DIR, s, "release")));
  if (!isCached()) {
    const r = Bun.spawnSync(["bash", join(REPO, "scripts/fetch-guest-kernels.sh"), KERNELS_DIR], { stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error(`scripts/fetch-guest-kernels.sh ${KERNELS_DIR} failed`);
  }
  return GUEST_SUITES.map((suite) => {
    const dir = join(KERNELS_DIR, suite);
    const release = readFileSync(join(dir, "release"), "utf8").trim();
    return { suite, release, vmlinuz: join(dir, "vmlinuz"), modules: join(dir, "modules", release) };
  });
}

/** The QEMU that boots them, or why there is none. */
export function qemuBinary(): string {
  const q = Bun.which("qemu-system-x86_64");
  if (!q) throw new Error("qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (scripts/test.sh installs it)");
  return q;
}

/** A program and the shared libraries `ldd` names for it, as host paths (the guest gets each at the same path). */
export function withLibraries(programs: readonly string[]): string[] {
  const out = new Set<string>();
  for (const p of programs) {
    out.add(p);
    const r = Bun.spawnSync(["ldd", p], { stdout: "pipe", stderr: "pipe" });
    const text = r.stdout.toString();
    if (r.exitCode !== 0 && !/not a dynamic executable/.test(r.stderr.toString() + text)) throw new Error(`ldd ${p} failed: ${r.stderr}`);
    for (const m of text.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) out.add(m[1]!);
  }
  return [...out];
}

/**
 * CRIU for the guest, as host files: none. The guest holds the autopod binary
 * and nothing else of autopod; its init installs the CRIU the binary carries.
 */
export function criuForGuest(): string[] {
  // None: the guest's CRIU is the one the autopod binary carries (`autopod criu install` in guest-init.sh).
  return [];
}

/** Host programs the agent and CRIU run in the guest (resolved from PATH), with their libraries: CRIU restores tmpfs mounts with tar and gzip. */
export function agentToolsForGuest(): string[] {
  const tools = ["ip", "nft", "nsenter", "unshare", "tar", "gzip"].map((t) => {
    const p = Bun.which(t, { PATH: "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" });
    if (!p) throw new Error(`${t} is missing on this host: the guest gets it from here`);
    return realpathSync(p);
  });
  return withLibraries(tools);
}

/** Busybox applets the guest's init uses (others come from the host: ip, nsenter, unshare). */
// biome-ignore format: a list
const APPLETS = [
  "sh", "mount", "umount", "mkdir", "cat", "echo", "sleep", "grep", "sed", "tr", "cp", "ln", "modprobe", "insmod", "lsmod",
  "poweroff", "switch_root", "hostname", "ls", "rm", "head", "tail", "wc", "true", "seq", "tee", "chmod", "cut", "awk",
  "dmesg", "env", "printf", "kill", "dd", "stat", "sync", "expr", "test", "[",
];

export interface InitramfsSpec {
  kernel: GuestKernel;
  /** The autopod binary to put in the guest. */
  autopod: string;
  /** The guest's init script (busybox sh). */
  init: string;
  /** Extra files: guest path -> host path. */
  files: Record<string, string>;
  /** Extra files made of data: guest path -> contents. */
  data: Record<string, string>;
  busybox?: string;
}

/** Write the guest's initramfs to `out`. */
export function buildInitramfs(out: string, spec: InitramfsSpec): void {
  const busybox = spec.busybox ?? (existsSync("/bin/busybox") ? "/bin/busybox" : "/usr/bin/busybox");
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const dir = (d: string) => {
    if (d === "/" || d === "." || dirs.has(d)) return;
    dir(dirname(d));
    dirs.add(d);
    entries.push({ type: "dir", path: d });
  };
  const file = (guest: string, from: string) => {
    dir(dirname(guest));
    entries.push({ type: "file", path: guest, from });
  };
  for (const d of ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/lib", "/etc/autopod", "/sbin", "/usr/sbin", "/usr/bin"]) dir(d);
  file("/bin/busybox", busybox);
  for (const a of APPLETS) entries.push({ type: "symlink", path: `/bin/${a}`, target: "busybox" });
  entries.push({ type: "symlink", path: "/sbin/modprobe", target: "/bin/busybox" });
  // Host programs and libraries at their own paths; a library reached through a symlink (/lib64/ld-linux...) gets the link too.
  for (const p of [...criuForGuest(), ...agentToolsForGuest(), ...withLibraries([spec.autopod]).slice(1)]) {
    const real = realpathSync(p);
    if (real !== p) {
      dir(dirname(p));
      if (!entries.some((e) => e.path === p)) entries.push({ type: "symlink", path: p, target: real });
    }
    if (!entries.some((e) => e.path === real)) file(real, real);
  }
  file("/usr/local/bin/autopod", spec.autopod);
  // The kernel's modules, at /lib/modules/RELEASE (uncompressed, with modules.dep for modprobe).
  const modRoot = `/lib/modules/${spec.kernel.release}`;
  const walk = (host: string, guest: string) => {
    for (const e of readdirSync(host, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(host, e.name), `${guest}/${e.name}`);
      else if (statSync(join(host, e.name)).isFile()) file(`${guest}/${e.name}`, join(host, e.name));
    }
  };
  walk(spec.kernel.modules, modRoot);
  for (const [g, h] of Object.entries(spec.files)) file(g, h);
  for (const [g, d] of Object.entries(spec.data)) {
    dir(dirname(g));
    entries.push({ type: "data", path: g, data: d });
  }
  dir("/");
  entries.push({ type: "file", path: "/init", from: spec.init, mode: 0o755 });
  writeCpio(out, entries);
}

export interface GuestRun {
  /** Everything the serial console printed. */
  serial: string;
  /** The "@@xk KEY VALUE" lines, by key (the last of each). */
  report: Map<string, string>;
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
}

/** Boot a kernel with an initramfs under TCG; bounded by `timeoutMs` (QEMU is killed then). `disk` is a raw file the guest sees as /dev/vda. */
export async function bootGuest(kernel: GuestKernel, initrd: string, opts: { timeoutMs: number; disk?: string; memory?: string }): Promise<GuestRun> {
  const argv = [
    qemuBinary(),
    ...["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", opts.memory ?? "2G", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"],
    ...["-kernel", kernel.vmlinuz, "-initrd", initrd],
    ...["-append", "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init"],
    ...(opts.disk ? ["-drive", `file=${opts.disk},format=raw,if=virtio`] : []),
  ];
  const t0 = performance.now();
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.kill("SIGKILL");
  }, opts.timeoutMs);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  const serial = out + (err ? `\n[qemu stderr] ${err}` : "");
  const report = new Map<string, string>();
  for (const line of serial.split(/\r?\n/)) {
    const m = /@@xk (\S+) ?(.*)$/.exec(line);
    if (m) report.set(m[1]!, m[2]!.trim());
  }
  return { serial, report, exitCode: p.exitCode, timedOut, ms: performance.now() - t0 };
}
