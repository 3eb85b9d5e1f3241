/**
 * Open a file that a pod (or an image) controls, from the agent's side: the
 * path resolves beneath its directory and through no symbolic link at all
 * (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a pod that swaps a
 * component for a link to a host file gets an error, never the host file.
 */
import { closeSync, constants, fstatSync, openSync, type Stats } from "node:fs";
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { PreconditionError } from "../../errors.ts";

const SYS_openat2 = 437; // the same on x86-64 and arm64
const RESOLVE_NO_XDEV = 0x01;
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_NO_SYMLINKS = 0x04;
const RESOLVE_BENEATH = 0x08;
const ELOOP = 40;
const EXDEV = 18;
const ENOENT = 2;

let lib: ReturnType<typeof load> | undefined;
function load() {
  return dlopen("libc.so.6", {
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

/** The path could not be opened beneath its directory: it is or goes through a link, leaves the directory, or is no regular file. */
export class UnsafePathError extends PreconditionError {
  override name = "UnsafePathError";
}

function unsafe(path: string, errno: number): UnsafePathError {
  if (errno === ELOOP) return new UnsafePathError(`"${path}" is or goes through a symbolic link: autopod does not follow links a pod can write`);
  if (errno === EXDEV) return new UnsafePathError(`"${path}" leaves its directory`);
  return new UnsafePathError(`Cannot open "${path}": errno ${errno}`);
}

/**
 * Open `rel` beneath the directory `dir` (which the caller trusts) with `flags`
 * (O_* from node:fs). Returns the fd, or null when it does not exist.
 * O_CLOEXEC and O_NOFOLLOW are always added. With crossMounts the path may
 * pass into mounts beneath `dir` (a pod's /dev/pts), still through no link.
 */
export function openBeneath(dir: string, rel: string, flags: number, opts: { crossMounts?: boolean } = {}): number | null {
  const l = (lib ??= load()).symbols;
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | 0o2000000 /* O_CLOEXEC */);
  try {
    const how = new BigUint64Array([
      BigInt(flags | constants.O_NOFOLLOW | 0o2000000),
      0n,
      BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | (opts.crossMounts ? 0 : RESOLVE_NO_XDEV)),
    ]);
    const path = Buffer.from(`${rel}\0`);
    const fd = Number(l.syscall(BigInt(SYS_openat2), BigInt(dirFd), ptr(path), ptr(how), BigInt(how.byteLength)));
    if (fd >= 0) return fd;
    const errno = read.i32(l.__errno_location()!, 0);
    if (errno === ENOENT) return null;
    throw unsafe(`${dir}/${rel}`, errno);
  } finally {
    closeSync(dirFd);
  }
}

/** Open a regular file beneath `dir` for reading, without blocking on a FIFO; null when missing. */
export function openRegularBeneath(dir: string, rel: string): { fd: number; stat: Stats } | null {
  const fd = openBeneath(dir, rel, constants.O_RDONLY | constants.O_NONBLOCK);
  if (fd === null) return null;
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    throw new UnsafePathError(`"${dir}/${rel}" is not a regular file`);
  }
  return { fd, stat };
}
