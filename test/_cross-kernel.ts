/**
 * The cross-kernel scenario, shared by test/cross-kernel.test.ts and
 * bench/cross-kernel.ts: a counter pod checkpointed on this host and exported,
 * then imported and restored inside a guest running another kernel, where it
 * must go on counting from where it stopped (and back to this host).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RELEVANT_CPU_FLAGS } from "../src/cluster/cpu-baseline.ts";
import { bootGuest, buildInitramfs, type GuestKernel, type GuestRun } from "./_guest.ts";
import type { TestHost } from "./_pods.ts";
import { DIST, REPO } from "./_support.ts";

/** Modules the guest loads at boot (modprobe loads what each depends on; the kernel asks for the rest). */
export const GUEST_MODULES = [
  "crc32c_generic",
  "nfnetlink",
  "inet_diag",
  "tcp_diag",
  "udp_diag",
  "raw_diag",
  "unix_diag",
  "netlink_diag",
  "af_packet_diag",
  // CRIU dumps a net namespace's conntrack entries through ctnetlink: without it, "-22 reported by netlink".
  "nf_conntrack_netlink",
  "bridge",
  "veth",
  "overlay",
  "virtio_pci",
  "virtio_blk",
];

/** Loaded only after the guest has checked that a restore without them is refused (test/fixtures/guest-init.sh). */
export const LATE_GUEST_MODULES = ["nf_tables"];

/** A counter: one number a line, five a second. */
export const COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done"];

/** This host's /proc/cpuinfo flags. */
export function hostCpuFlags(): string[] {
  return /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim().split(/\s+/) ?? [];
}

/** Boot a guest that prints its CPU flags and powers off. */
export async function probeGuestFlags(kernel: GuestKernel): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "autopod-xk-probe-"));
  try {
    const init = join(dir, "init");
    writeFileSync(
      init,
      '#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho "@@xk flags $(/bin/busybox grep -m1 ^flags /proc/cpuinfo | /bin/busybox cut -d: -f2)"\n/bin/busybox poweroff -f\n',
    );
    const { writeCpio } = await import("./_cpio.ts");
    const busybox = "/bin/busybox";
    writeCpio(join(dir, "initrd"), [
      { type: "dir", path: "bin" },
      { type: "dir", path: "proc" },
      { type: "file", path: "bin/busybox", from: busybox },
      { type: "file", path: "init", from: init, mode: 0o755 },
    ]);
    const run = await bootGuest(kernel, join(dir, "initrd"), { timeoutMs: 180_000, memory: "256M" });
    const flags = run.report.get("flags");
    if (!flags) throw new Error(`The probe guest (${kernel.suite}) printed no CPU flags${run.timedOut ? " (timed out)" : ""}: ${run.serial.slice(-2000)}`);
    return flags.split(/\s+/).filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The relevant features this host has and the guest lacks: what a pod must not use to restore there. */
export function lackingInGuest(host: readonly string[], guest: readonly string[]): string[] {
  const g = new Set(guest);
  return host.filter((f) => RELEVANT_CPU_FLAGS.has(f) && !g.has(f)).sort();
}

/** The numbers a counter's log shows, in order. */
export function countsOf(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((w) => /^\d+$/.test(w))
    .map(Number);
}

/** Why the counts do not go on from `last` (last+1, last+2, ..., at least `atLeast` of them), or null. */
export function whyNotContinued(counts: readonly number[], last: number, atLeast: number): string | null {
  const after = counts.filter((n) => n > last);
  // Any step other than +1 (a restart from 1, a lost or repeated line) is a jump.
  if (counts.some((n, i) => i > 0 && n !== counts[i - 1]! + 1)) return `the counts jump: ${counts.join(" ")}`;
  if (after.length < atLeast) return `only ${after.length} counts after ${last} (wanted ${atLeast}): ${counts.join(" ")}`;
  if (after[0] !== last + 1) return `the first count after the checkpoint is ${after[0]}, not ${last + 1}: ${counts.join(" ")}`;
  return null;
}

export interface GuestScenario {
  kernel: GuestKernel;
  /** The host that made the images: its subnet is the guest agent's, so the pod keeps its address. */
  host: TestHost;
  /** The counter's export, and its pod name. */
  image: string;
  pod: string;
  /** An export the guest must refuse (CPU features it lacks), or none. */
  refused?: string;
  /** Checkpoint and export it again in the guest, onto a disk the host reads. */
  isBack?: boolean;
  timeoutMs: number;
}

export interface GuestOutcome extends GuestRun {
  /** The export the guest wrote back, when asked. */
  back: { id: string; file: string } | null;
  dir: string;
}

/** Boot the kernel with the images and the guest init; the caller removes `dir`. */
export async function runScenario(s: GuestScenario): Promise<GuestOutcome> {
  const dir = mkdtempSync(join(tmpdir(), `autopod-xk-${s.kernel.suite}-`));
  const config = [
    'state_dir = "/var/lib/autopod"',
    'socket = "/run/autopod.sock"',
    "[network]",
    'bridge = "apxk0"',
    `subnet = "${s.host.subnet}"`,
    "nat = false",
  ].join("\n");
  const env = [
    `XK_MODULES="${GUEST_MODULES.join(" ")}"`,
    `XK_LATE_MODULES="${LATE_GUEST_MODULES.join(" ")}"`,
    `XK_IMAGE=/images/counter.apod`,
    `XK_POD=${s.pod}`,
    `XK_REFUSED=${s.refused ? "/images/refused.apod" : ""}`,
    `XK_BACK=${s.isBack ? "1" : ""}`,
    "XK_COUNT_SECONDS=3",
  ].join("\n");
  const files: Record<string, string> = { "/images/counter.apod": s.image };
  if (s.refused) files["/images/refused.apod"] = s.refused;
  const initrd = join(dir, "initrd.cpio");
  buildInitramfs(initrd, {
    kernel: s.kernel,
    autopod: DIST,
    init: join(REPO, "test/fixtures/guest-init.sh"),
    files,
    data: { "/etc/autopod/autopod.toml": `${config}\n`, "/etc/xk.env": `${env}\n` },
  });
  const disk = join(dir, "disk.img");
  if (s.isBack) writeFileSync(disk, Buffer.alloc(64 << 20));
  const run = await bootGuest(s.kernel, initrd, { timeoutMs: s.timeoutMs, ...(s.isBack ? { disk } : {}) });
  rmSync(initrd, { force: true });
  let back: GuestOutcome["back"] = null;
  const b = run.report.get("back-image")?.split(" ");
  if (b && b.length === 2) {
    const file = join(dir, "back.apod");
    const size = Number(b[1]);
    writeFileSync(file, readFileSync(disk).subarray(0, size));
    back = { id: b[0]!, file };
  }
  return { ...run, back, dir };
}
