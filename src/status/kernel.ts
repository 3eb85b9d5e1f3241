/**
 * The kernel check: is a newer kernel of the running kernel's flavour
 * installed (a version upgrade), or the running release rebuilt (an
 * ABI-compatible update, same `uname -r`, different `uname -v`)?
 *
 * The rule, shaped by needrestart's known false alarms:
 * - Only kernel images count: vmlinuz*, vmlinux*, bzImage*, kernel*, Image*;
 *   initrd and initramfs files, System.map, config, *.old, *.sig, *.hmac and
 *   Fedora's rescue kernel (vmlinuz-0-rescue-*) are ignored.
 * - A bzImage's version comes from its header (so "vmlinuz-linux" works);
 *   otherwise from its file name, when the name carries one and the file is
 *   big enough to be a kernel (1 MiB, needrestart's limit): a stray small
 *   file named like a kernel is not one.
 *   /lib/modules/* stands in only when /boot holds no image.
 * - Kernels are compared only with the running kernel's flavour. A custom or
 *   externally booted kernel (a VM booted by its host, a container) with no
 *   installed kernel of its flavour is never an alarm, whatever else /boot holds.
 * - An ABI-only rebuild is reported only when both build strings are known.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import { type Checker, type CheckOptions, type CheckResult, failed, type KernelReason, type Reason } from "./checker.ts";
import { inRoot } from "./host-paths.ts";
import { KERNEL_HEADER_BYTES, normalizeBuild, parseKernelVersionString, readBzImageVersion } from "./kernel-image.ts";
import { compareKernelReleases, parseKernelRelease } from "./kernel-release.ts";

export interface InstalledKernel {
  release: string;
  build?: string;
  /** The image file, or the modules directory when there is no image. */
  path: string;
  /** Where the release came from. */
  from: "header" | "file name" | "modules directory";
}

/** A kernel image without a header we can read is believed by its name only from this size up (needrestart ignores smaller files). */
export const MIN_NAMED_IMAGE_BYTES = 1024 * 1024;

const IMAGE_NAME = /^(?:vmlinuz|vmlinux|bzImage|kernel|Image)(?:-(.+))?$/;
const IGNORED_IMAGE = /(\.old|\.bak|\.sig|\.hmac|\.dpkg-\w+|\.rpmsave|\.rpmnew|~)$|(^|-)rescue-/;

/** True for a file name that is a kernel image (not an initrd, map, config, backup or rescue image). */
export function isKernelImageName(name: string): boolean {
  return IMAGE_NAME.test(name) && !IGNORED_IMAGE.test(name);
}

/** The release a kernel image's file name carries ("vmlinuz-6.1.0-18-amd64"), or null ("vmlinuz-linux", "vmlinuz"). */
export function releaseFromImageName(name: string): string | null {
  const suffix = IMAGE_NAME.exec(name)?.[1];
  return suffix !== undefined && /^\d+\.\d+/.test(suffix) ? suffix : null;
}

async function readHead(path: string, bytes: number): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(path).slice(0, bytes).arrayBuffer());
}

/** The kernels installed in a boot directory, versions read from their headers where possible. */
export async function findBootKernels(bootDir: string, notes: string[]): Promise<InstalledKernel[]> {
  let names: string[];
  try {
    names = await readdir(bootDir);
  } catch {
    return [];
  }
  const out: InstalledKernel[] = [];
  for (const name of names.sort()) {
    if (!isKernelImageName(name)) continue;
    const path = join(bootDir, name);
    try {
      const version = readBzImageVersion(await readHead(path, KERNEL_HEADER_BYTES));
      if (version) {
        out.push({ ...parseKernelVersionString(version), path, from: "header" });
        continue;
      }
    } catch (e) {
      notes.push(`cannot read the header of "${path}" (${errorMessage(e)}); using its file name`);
    }
    const release = releaseFromImageName(name);
    if (!release) {
      notes.push(`"${path}" names no version and its header has none; ignored`);
      continue;
    }
    const size = (await stat(path).catch(() => null))?.size ?? 0;
    if (size < MIN_NAMED_IMAGE_BYTES) notes.push(`"${path}" has no kernel header and is ${size} bytes, too small for a kernel image (under 1 MiB); ignored`);
    else out.push({ release, path, from: "file name" });
  }
  return out;
}

/** Kernels known only by their modules directories (/lib/modules/RELEASE), with a header when an image sits there (Fedora). */
export async function findModuleKernels(moduleDirs: readonly string[]): Promise<InstalledKernel[]> {
  const out = new Map<string, InstalledKernel>();
  for (const dir of moduleDirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const release of names.sort()) {
      if (!/^\d+\.\d+/.test(release) || out.has(release)) continue;
      const path = join(dir, release);
      let build: string | undefined;
      try {
        const v = readBzImageVersion(await readHead(join(path, "vmlinuz"), KERNEL_HEADER_BYTES));
        if (v && parseKernelVersionString(v).release === release) build = parseKernelVersionString(v).build;
      } catch {
        // no image there
      }
      out.set(release, { release, build, path, from: "modules directory" });
    }
  }
  return [...out.values()];
}

export interface RunningKernel {
  release: string;
  build: string;
}

/** What `uname -r` and `uname -v` say, from procfs. */
export async function readRunningKernel(procDir: string): Promise<RunningKernel> {
  const release = (await readFile(join(procDir, "sys/kernel/osrelease"), "utf8")).trim();
  let build: string;
  try {
    build = normalizeBuild(await readFile(join(procDir, "sys/kernel/version"), "utf8"));
  } catch {
    build = parseKernelVersionString(await readFile(join(procDir, "version"), "utf8")).build ?? "";
  }
  return { release, build };
}

/** The verdict of the rule above, from the running kernel and the installed ones. Pure. */
export function judgeKernels(running: RunningKernel, installed: readonly InstalledKernel[], notes: readonly string[] = []): CheckResult {
  const noteReasons: Reason[] = notes.map((message) => ({ kind: "note", message }));
  if (installed.length === 0) {
    return {
      verdict: "not_applicable",
      summary: `running ${running.release}; no kernel installed in /boot or /lib/modules (booted from outside this system)`,
      reasons: noteReasons,
    };
  }
  const mine = parseKernelRelease(running.release);
  const same = installed.filter((k) => parseKernelRelease(k.release).flavour === mine.flavour);
  if (same.length === 0) {
    const others = [...new Set(installed.map((k) => k.release))].join(", ");
    return {
      verdict: "ok",
      summary: `running ${running.release}, a kernel of flavour "${mine.flavour}" that is not installed here; ignoring other flavours (${others})`,
      reasons: noteReasons,
    };
  }
  const newest = same.reduce((a, b) => (compareKernelReleases(parseKernelRelease(b.release), parseKernelRelease(a.release)) > 0 ? b : a));
  const reasons: KernelReason[] = [];
  if (compareKernelReleases(parseKernelRelease(newest.release), mine) > 0) {
    reasons.push({ kind: "kernel", change: "version_upgrade", running: running.release, installed: newest.release, image: newest.path });
  }
  const current = same.find((k) => k.release === running.release && k.build !== undefined);
  if (current && running.build && current.build !== running.build) {
    reasons.push({
      kind: "kernel",
      change: "abi_rebuild",
      running: running.release,
      installed: current.release,
      running_build: running.build,
      installed_build: current.build,
      image: current.path,
    });
  }
  if (reasons.length === 0) {
    const where = same.some((k) => k.release === running.release) ? "the newest installed" : `newer than the installed ${newest.release}`;
    return { verdict: "ok", summary: `running ${running.release}, ${where}`, reasons: noteReasons };
  }
  const summary = reasons
    .map((r) =>
      r.change === "version_upgrade"
        ? `${r.installed} is installed, ${r.running} is running`
        : `${r.running} was rebuilt (${r.installed_build}), running ${r.running_build}`,
    )
    .join("; ");
  return { verdict: "reboot_required", summary, reasons: [...reasons, ...noteReasons] };
}

export const kernelChecker: Checker = {
  name: "kernel",
  source: "/proc/sys/kernel/{osrelease,version} vs /boot/vmlinuz-* headers, else /lib/modules/*",
  async check(opts: CheckOptions): Promise<CheckResult> {
    let running: RunningKernel;
    try {
      running = await readRunningKernel(opts.paths.proc);
    } catch (e) {
      return failed(`Cannot read the running kernel's release: ${errorMessage(e)}`);
    }
    const notes: string[] = [];
    let installed = await findBootKernels(opts.paths.boot, notes);
    if (installed.length === 0) installed = await findModuleKernels([inRoot(opts.paths, "lib/modules"), inRoot(opts.paths, "usr/lib/modules")]);
    return judgeKernels(running, installed, notes);
  },
};
