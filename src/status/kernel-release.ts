/**
 * Kernel release strings (`uname -r`) split into upstream version, ABI or
 * build number, and flavour, so that only kernels of the same flavour are
 * compared: an "-amd64" kernel is never the successor of a "-cloud-amd64" or
 * of a custom one, which is needrestart's most reported false alarm.
 */
import { rpmvercmp } from "./rpm-version.ts";

export interface KernelRelease {
  release: string;
  /** "6.1.0" */
  upstream: string;
  /** What the distribution bumps for a new build: "18", "0.deb11.17", "+deb13", "300.fc39", "669". */
  abi: string;
  /** What stays the same across updates of one kernel line: "amd64", "cloud-amd64", "generic", "x86_64", "fc-v#". */
  flavour: string;
}

const RPM_ARCH = "(x86_64|aarch64|ppc64le|s390x|i686|armv7hl|riscv64)";

/** Split a release string; the rules are tried from most to least specific. */
export function parseKernelRelease(release: string): KernelRelease {
  let m: RegExpExecArray | null;
  // Fedora, RHEL and clones: 6.5.6-300.fc39.x86_64, 5.14.0-362.8.1.el9_3.x86_64+debug
  if ((m = new RegExp(`^(\\d+(?:\\.\\d+)+)-(\\d[\\w.]*)\\.${RPM_ARCH}(?:\\+(\\w+))?$`).exec(release))) {
    const rt = /(^|\.)rt\d/.test(m[2]!) ? "+rt" : "";
    return { release, upstream: m[1]!, abi: m[2]!, flavour: m[3]! + (m[4] ? `+${m[4]}` : "") + rt };
  }
  // Debian and Ubuntu: 6.1.0-18-amd64, 6.1.0-0.deb11.17-cloud-amd64, 5.15.0-91-generic
  if ((m = /^(\d+(?:\.\d+)+)-(\d+(?:\.[\w.]+)?)-([a-z][\w-]*)$/.exec(release))) {
    return { release, upstream: m[1]!, abi: m[2]!, flavour: m[3]! };
  }
  // Debian from trixie: 6.12.12+deb13-amd64, 6.12.9+bpo-cloud-amd64
  if ((m = /^(\d+(?:\.\d+)+)\+([\w.~]+)-([a-z][\w-]*)$/.exec(release))) {
    return { release, upstream: m[1]!, abi: `+${m[2]}`, flavour: m[3]! };
  }
  // Anything else (custom, Arch, Raspberry Pi): the local version's numbers
  // are its build, the rest its flavour: 6.7.4-arch1-1 -> "arch#-#", 6.18.44-fc-v669 -> "fc-v#".
  m = /^(\d+(?:\.\d+)*)(.*)$/.exec(release);
  if (!m) return { release, upstream: "", abi: "", flavour: release };
  const local = m[2]!.replace(/^[-+_.]/, m[2]!.startsWith("+") ? "+" : "");
  const abi = (local.match(/\d+/g) ?? []).join(".");
  return { release, upstream: m[1]!, abi, flavour: local.replace(/\d+/g, "#") };
}

/** Order two kernels of one flavour: upstream version first, then the ABI or build number. */
export function compareKernelReleases(a: KernelRelease, b: KernelRelease): number {
  return rpmvercmp(a.upstream, b.upstream) || rpmvercmp(a.abi, b.abi);
}
