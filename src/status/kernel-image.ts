/**
 * The version string inside a kernel image. An x86 bzImage carries it in its
 * setup header, as needrestart reads it: the "HdrS" magic at 0x202 and, at
 * 0x20E, a 16-bit pointer to the string, relative to 0x200.
 */

/** How much of an image to read to reach its version string: the pointer is 16 bits. */
export const KERNEL_HEADER_BYTES = 0x200 + 0x10000 + 256;

/** The version string of a bzImage ("6.1.0-18-amd64 (builder) #1 SMP ..."), or null when it is not one. */
export function readBzImageVersion(image: Uint8Array): string | null {
  if (image.length < 0x210) return null;
  if (image[0x202] !== 0x48 || image[0x203] !== 0x64 || image[0x204] !== 0x72 || image[0x205] !== 0x53) return null; // "HdrS"
  const protocol = image[0x206]! | (image[0x207]! << 8);
  if (protocol < 0x200) return null; // kernel_version appeared in boot protocol 2.00
  const pointer = image[0x20e]! | (image[0x20f]! << 8);
  if (pointer === 0) return null;
  const start = pointer + 0x200;
  if (start >= image.length) return null;
  let end = start;
  while (end < image.length && end - start < 512 && image[end] !== 0) end++;
  const s = new TextDecoder("latin1").decode(image.subarray(start, end)).trim();
  return /^\d+\.\d+/.test(s) ? s : null;
}

export interface KernelVersionString {
  /** `uname -r`: "6.1.0-18-amd64". */
  release: string;
  /** `uname -v`: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", when the string has it. */
  build?: string;
}

/**
 * Split a version string into release and build. Works on an image's string
 * ("release (builder) #build") and on /proc/version ("Linux version release
 * (builder) (compiler) #build").
 */
export function parseKernelVersionString(s: string): KernelVersionString {
  const text = s.replace(/^Linux version /, "").trim();
  const release = text.split(/\s+/)[0] ?? "";
  const hash = text.indexOf(" #");
  return hash === -1 ? { release } : { release, build: normalizeBuild(text.slice(hash + 1)) };
}

/** Builds compare equal when they differ only in spacing. */
export function normalizeBuild(build: string): string {
  return build.trim().replace(/\s+/g, " ");
}
