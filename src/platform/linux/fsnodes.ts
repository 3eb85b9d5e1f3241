/**
 * File system nodes node:fs cannot make or read: overlayfs whiteouts (0:0
 * character devices), FIFOs, and the "opaque directory" xattr. Through libc.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";

let lib: ReturnType<typeof open> | undefined;
function open() {
  return dlopen("libc.so.6", {
    mknod: { args: [FFIType.cstring, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
    lgetxattr: { args: [FFIType.cstring, FFIType.cstring, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    lsetxattr: { args: [FFIType.cstring, FFIType.cstring, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}
const c = () => (lib ??= open()).symbols;
const cstr = (s: string) => Buffer.from(s + "\0");

function errno(): number {
  const p = c().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;

/** The name overlayfs gives the xattr that hides a lower directory's contents. */
export const OVERLAY_OPAQUE = "trusted.overlay.opaque";

/** Make an overlayfs whiteout: a character device 0:0. */
export function mknodWhiteout(path: string, mode = 0): void {
  if (c().mknod(cstr(path), S_IFCHR | (mode & 0o7777), 0n) !== 0) throw new Error(`mknod "${path}" failed (errno ${errno()})`);
}

export function mkfifo(path: string, mode: number): void {
  if (c().mknod(cstr(path), S_IFIFO | (mode & 0o7777), 0n) !== 0) throw new Error(`mkfifo "${path}" failed (errno ${errno()})`);
}

/** Read an xattr without following symlinks; null when it is not set. */
export function lgetxattr(path: string, name: string): string | null {
  const buf = new Uint8Array(256);
  const n = Number(c().lgetxattr(cstr(path), cstr(name), ptr(buf), BigInt(buf.byteLength)));
  return n < 0 ? null : Buffer.from(buf.subarray(0, n)).toString("utf8");
}

export function lsetxattr(path: string, name: string, value: string): void {
  const v = Buffer.from(value);
  if (c().lsetxattr(cstr(path), cstr(name), v.byteLength ? ptr(v) : ptr(new Uint8Array(1)), BigInt(v.byteLength), 0) !== 0) {
    throw new Error(`setxattr ${name} on "${path}" failed (errno ${errno()})`);
  }
}
