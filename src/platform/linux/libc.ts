/**
 * The few libc calls autopod needs that Bun has no API for, through bun:ffi.
 * Each wrapper throws an Errno with the call, its argument and strerror.
 * Over 600 lines: every wrapper shares the one dlopen table and check(); the
 * netlink and namespace helpers could move out with the table exported.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { writeSync } from "node:fs";

const { i32, u32, u64, ptr: P, cstring } = FFIType;

let lib: ReturnType<typeof open> | undefined;
function open() {
  return dlopen("libc.so.6", {
    __errno_location: { args: [], returns: P },
    strerror: { args: [i32], returns: cstring },
    prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
    waitpid: { args: [i32, P, i32], returns: i32 },
    mount: { args: [P, P, P, u64, P], returns: i32 },
    umount2: { args: [P, i32], returns: i32 },
    syscall: { args: [u64, u64, u64, u64], returns: i32 },
    sethostname: { args: [P, u64], returns: i32 },
    setsid: { args: [], returns: i32 },
    chdir: { args: [P], returns: i32 },
    open: { args: [P, i32, u32], returns: i32 },
    dup2: { args: [i32, i32], returns: i32 },
    fcntl: { args: [i32, i32, i32], returns: i32 },
    execve: { args: [P, P, P], returns: i32 },
    signal: { args: [i32, u64], returns: u64 },
    sigprocmask: { args: [i32, P, P], returns: i32 },
    flock: { args: [i32, i32], returns: i32 },
    mknod: { args: [P, u32, u64], returns: i32 },
    lgetxattr: { args: [P, P, P, u64], returns: FFIType.i64 },
    lsetxattr: { args: [P, P, P, u64, i32], returns: i32 },
    memfd_create: { args: [P, u32], returns: i32 },
    socket: { args: [i32, i32, i32], returns: i32 },
    connect: { args: [i32, P, u32], returns: i32 },
    sendto: { args: [i32, P, u64, i32, P, u32], returns: FFIType.i64 },
    recv: { args: [i32, P, u64, i32], returns: FFIType.i64 },
    close: { args: [i32], returns: i32 },
    setsockopt: { args: [i32, i32, i32, P, u32], returns: i32 },
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    getsockname: { args: [i32, P, P], returns: i32 },
    getpeername: { args: [i32, P, P], returns: i32 },
    setns: { args: [i32, i32], returns: i32 },
    unshare: { args: [i32], returns: i32 },
    if_nametoindex: { args: [P], returns: u32 },
    eventfd: { args: [u32, i32], returns: i32 },
    ioctl: { args: [i32, u64, u64], returns: i32 },
  });
}
function libc() {
  return (lib ??= open()).symbols;
}

/** syscall(2) with four arguments after its number (the one above passes three: a fourth would be whatever a register held). */
let lib4: ReturnType<typeof open4> | undefined;
function open4() {
  return dlopen("libc.so.6", { syscall: { args: [u64, u64, u64, u64, u64], returns: i32 } });
}
function syscall4(n: number, a: bigint, b: bigint, c: bigint, d: bigint): number {
  return (lib4 ??= open4()).symbols.syscall(BigInt(n), a, b, c, d);
}

/** A failed system call: `Cannot mount "/x": Permission denied (EPERM)`. */
export class Errno extends Error {
  override name = "Errno";
  constructor(
    readonly call: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${call}${detail ? ` ${JSON.stringify(detail)}` : ""}: ${String(libc().strerror(errno))} (errno ${errno})`);
  }
}

function errno(): number {
  return read.i32(libc().__errno_location()!, 0);
}

function check(rc: number | bigint, call: string, detail = ""): number {
  if (Number(rc) === -1) throw new Errno(call, errno(), detail);
  return Number(rc);
}

/** A NUL-terminated copy of a string, kept alive by the caller's reference. */
function cstr(s: string): Buffer {
  return Buffer.from(s + "\0");
}

const PR_SET_CHILD_SUBREAPER = 36;

/** Orphans of our children become our children, so we can reap pods. */
export function setChildSubreaper(): void {
  check(libc().prctl(PR_SET_CHILD_SUBREAPER, 1n, 0n, 0n, 0n), "prctl(PR_SET_CHILD_SUBREAPER)");
}

const PR_CAPBSET_DROP = 24;

/** Remove a capability from the bounding set: no later execve can grant it. */
export function dropBoundingCapability(cap: number): void {
  check(libc().prctl(PR_CAPBSET_DROP, BigInt(cap), 0n, 0n, 0n), "prctl(PR_CAPBSET_DROP)", String(cap));
}

const WNOHANG = 1;

/** A reaped child's wait status, decoded. */
export interface WaitStatus {
  pid: number;
  /** Exit code when it exited, else null. */
  code: number | null;
  /** Signal number when a signal killed it, else null. */
  signal: number | null;
}

/** Decode a raw wait(2) status. */
export function decodeWaitStatus(pid: number, status: number): WaitStatus {
  const sig = status & 0x7f;
  if (sig === 0) return { pid, code: (status >> 8) & 0xff, signal: null };
  return { pid, code: null, signal: sig };
}

/**
 * Reap `pid` if it has exited. Returns null while it runs, and "not-child"
 * when it is not our child (ECHILD): someone else will reap it.
 */
export function reapIfExited(pid: number): WaitStatus | null | "not-child" {
  const status = new Int32Array(1);
  const rc = libc().waitpid(pid, ptr(status), WNOHANG);
  if (rc === 0) return null;
  if (rc === -1) {
    const e = errno();
    if (e === 10 /* ECHILD */) return "not-child";
    throw new Errno("waitpid", e, String(pid));
  }
  return decodeWaitStatus(rc, status[0]!);
}

const SYS_pidfd_open = 434; // the same on x86-64 and arm64
const ESRCH = 3;

/** A pidfd for `pid` (close-on-exec, as pidfds always are); null when no such process runs. */
export function pidfdOpen(pid: number): number | null {
  const rc = libc().syscall(BigInt(SYS_pidfd_open), BigInt(pid), 0n, 0n);
  if (rc !== -1) return rc;
  const e = errno();
  if (e === ESRCH) return null;
  throw new Errno("pidfd_open", e, String(pid));
}

const SYS_pidfd_send_signal = 424; // the same on x86-64 and arm64

/** Sends `signal` to the process a pidfd names (never to another that took its pid); false when it is gone. */
export function pidfdSendSignal(pidfd: number, signal: number): boolean {
  if (syscall4(SYS_pidfd_send_signal, BigInt(pidfd), BigInt(signal), 0n, 0n) === 0) return true;
  const e = errno();
  if (e === ESRCH) return false;
  throw new Errno("pidfd_send_signal", e, String(pidfd));
}

const AF_UNIX = 1;
const SOCK_STREAM_CLOEXEC = 1 | 0o2000000;

/** A close-on-exec stream socket connected to the unix socket at `path` (at most 107 bytes); its fd, for a child to inherit. */
export function connectUnix(path: string): number {
  const bytes = Buffer.from(path);
  if (bytes.byteLength > 107) throw new Errno("connect", 36, path);
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  const fd = check(libc().socket(AF_UNIX, SOCK_STREAM_CLOEXEC, 0), "socket(AF_UNIX)");
  if (libc().connect(fd, ptr(addr), addr.byteLength) === -1) {
    const e = errno();
    libc().close(fd);
    throw new Errno("connect", e, path);
  }
  return fd;
}

const EFD_CLOEXEC = 0o2000000;
/** A close-on-exec eventfd, counter 0: writing 8 bytes wakes whoever polls it. */
export function eventfd(): number {
  return check(libc().eventfd(0, EFD_CLOEXEC), "eventfd");
}

export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  REMOUNT: 32,
  BIND: 4096,
  REC: 16384,
  PRIVATE: 1 << 18,
  SHARED: 1 << 20,
} as const;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  const s = source === null ? null : cstr(source);
  const t = cstr(target);
  const f = fstype === null ? null : cstr(fstype);
  const d = data === null ? null : cstr(data);
  const rc = libc().mount(s && ptr(s), ptr(t), f && ptr(f), BigInt(flags), d && ptr(d));
  check(rc, `mount(${fstype ?? (flags & MS.BIND ? "bind" : "flags")})`, target);
}

const MNT_DETACH = 2;
export function umountDetach(target: string): void {
  const t = cstr(target);
  check(libc().umount2(ptr(t), MNT_DETACH), "umount2", target);
}

// Syscall numbers for calls glibc 2.36 has no wrapper for.
const SYS_pivot_root = process.arch === "arm64" ? 41 : 155;

export function pivotRoot(newRoot: string, putOld: string): void {
  const n = cstr(newRoot);
  const o = cstr(putOld);
  check(libc().syscall(BigInt(SYS_pivot_root), BigInt(ptr(n)), BigInt(ptr(o)), 0n), "pivot_root", newRoot);
}

export function sethostname(name: string): void {
  const b = Buffer.from(name);
  check(libc().sethostname(ptr(b), BigInt(b.length)), "sethostname", name);
}

// Raw system calls change the calling thread's credentials only (glibc's wrappers change every thread's):
// pod-init calls them on the thread that then calls execve, which gives them to the new program.
const SYS_setgroups = process.arch === "arm64" ? 159 : 116;
const SYS_setresgid = process.arch === "arm64" ? 149 : 119;
const SYS_setresuid = process.arch === "arm64" ? 147 : 117;

/** Become uid:gid with exactly these supplementary groups, this thread only (see above); root loses its capabilities. */
export function becomeUser(uid: number, gid: number, groups: readonly number[]): void {
  const list = new Uint32Array(groups.length || 1);
  list.set(groups);
  check(libc().syscall(BigInt(SYS_setgroups), BigInt(groups.length), BigInt(ptr(list)), 0n), "setgroups", groups.join(","));
  check(libc().syscall(BigInt(SYS_setresgid), BigInt(gid), BigInt(gid), BigInt(gid)), "setresgid", String(gid));
  check(libc().syscall(BigInt(SYS_setresuid), BigInt(uid), BigInt(uid), BigInt(uid)), "setresuid", String(uid));
}

export function setsid(): number {
  return check(libc().setsid(), "setsid");
}

export function chdir(path: string): void {
  const p = cstr(path);
  check(libc().chdir(ptr(p)), "chdir", path);
}

export const O = { RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, APPEND: 0o2000, CLOEXEC: 0o2000000 } as const;

export function openFd(path: string, flags: number, mode = 0o644): number {
  const p = cstr(path);
  return check(libc().open(ptr(p), flags, mode), "open", path);
}

export function dup2(from: number, to: number): void {
  check(libc().dup2(from, to), "dup2", `${from} -> ${to}`);
}

const F_DUPFD_CLOEXEC = 1030;
/** A close-on-exec duplicate of fd at or above `min`. */
export function dupCloexec(fd: number, min = 3): number {
  return check(libc().fcntl(fd, F_DUPFD_CLOEXEC, min), "fcntl(F_DUPFD_CLOEXEC)");
}

const SYS_close_range = 436; // the same on x86-64 and arm64
const CLOSE_RANGE_CLOEXEC = 4;
/** Mark every fd from `first` up close-on-exec: they close exactly when execve succeeds. */
export function cloexecFrom(first: number): void {
  check(libc().syscall(BigInt(SYS_close_range), BigInt(first), 0xffffffffn, BigInt(CLOSE_RANGE_CLOEXEC)), "close_range");
}

/**
 * Give the next program default signal dispositions and an empty signal
 * mask: Bun ignores SIGPIPE, and ignored signals survive execve.
 */
export function resetSignals(): void {
  for (let sig = 1; sig < 32; sig++) {
    if (sig === 9 || sig === 19) continue; // SIGKILL, SIGSTOP
    libc().signal(sig, 0n); // SIG_DFL
  }
  const empty = new Uint8Array(128);
  check(libc().sigprocmask(2 /* SIG_SETMASK */, ptr(empty), null), "sigprocmask");
}

/** Replace this process with `path`. Returns only by throwing. */
export function execve(path: string, argv: readonly string[], env: readonly string[]): never {
  const keep: Buffer[] = [];
  const table = (items: readonly string[]) => {
    const arr = new BigUint64Array(items.length + 1);
    items.forEach((s, i) => {
      const b = cstr(s);
      keep.push(b);
      arr[i] = BigInt(ptr(b));
    });
    return arr;
  };
  const p = cstr(path);
  const a = table(argv);
  const e = table(env);
  libc().execve(ptr(p), ptr(a), ptr(e));
  throw new Errno("execve", errno(), path);
}

const LOCK_EX = 2;
const LOCK_NB = 4;
/** Take an exclusive lock on an open file without waiting; false when another process holds it. */
export function tryLock(fd: number): boolean {
  if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = errno();
  if (e === 11 /* EWOULDBLOCK */) return false;
  throw new Errno("flock", e, String(fd));
}

// ---- File system nodes node:fs cannot make or read (overlayfs upper layers) ----

const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;
const ENODATA = 61;

/** The xattr that makes an overlayfs upper directory hide the lower one's contents. */
export const OVERLAY_OPAQUE = "trusted.overlay.opaque";

/** Make an overlayfs whiteout: a character device 0:0. */
export function mknodWhiteout(path: string, mode = 0): void {
  const p = cstr(path);
  check(libc().mknod(ptr(p), S_IFCHR | (mode & 0o7777), 0n), "mknod", path);
}

export function mkfifo(path: string, mode: number): void {
  const p = cstr(path);
  check(libc().mknod(ptr(p), S_IFIFO | (mode & 0o7777), 0n), "mkfifo", path);
}

/** Read an xattr without following symlinks; null when it is not set. */
export function lgetxattr(path: string, name: string): string | null {
  const p = cstr(path);
  const n = cstr(name);
  const buf = new Uint8Array(256);
  const len = Number(libc().lgetxattr(ptr(p), ptr(n), ptr(buf), BigInt(buf.byteLength)));
  if (len >= 0) return Buffer.from(buf.subarray(0, len)).toString("utf8");
  const e = errno();
  if (e === ENODATA || e === 95 /* EOPNOTSUPP */) return null;
  throw new Errno("lgetxattr", e, path);
}

export function lsetxattr(path: string, name: string, value: string): void {
  const p = cstr(path);
  const n = cstr(name);
  const v = Buffer.from(value + "\0");
  check(libc().lsetxattr(ptr(p), ptr(n), ptr(v), BigInt(v.byteLength - 1), 0), "lsetxattr", path);
}

const MFD_CLOEXEC = 1;

/** An anonymous file in memory (memfd_create), close-on-exec; its fd. */
export function memfdCreate(name: string): number {
  const n = cstr(name);
  return check(libc().memfd_create(ptr(n), MFD_CLOEXEC), "memfd_create", name);
}

const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_SEAL_ALL = 1 | 2 | 4 | 8; // SEAL, SHRINK, GROW, WRITE

/** An anonymous file in memory holding `bytes`, sealed so nothing can change it any more, close-on-exec; its fd. */
export function sealedMemfd(name: string, bytes: Uint8Array): number {
  const n = cstr(name);
  const fd = check(libc().memfd_create(ptr(n), MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create", name);
  try {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done);
    check(libc().fcntl(fd, F_ADD_SEALS, F_SEAL_ALL), "fcntl(F_ADD_SEALS)", name);
  } catch (e) {
    libc().close(fd);
    throw e;
  }
  return fd;
}

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;

/**
 * Send whole Ethernet frames (header included) out of one interface, through
 * an AF_PACKET socket opened for the call: `ethertype` is the frames' type
 * (0x0806 for ARP), `dest` the 6-byte link address they go to.
 */
export function sendFrames(ifindex: number, ethertype: number, dest: Uint8Array, frames: Uint8Array[]): void {
  const proto = ((ethertype & 0xff) << 8) | (ethertype >> 8); // htons
  const fd = check(libc().socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, proto), "socket(AF_PACKET)");
  try {
    // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
    const sll = new Uint8Array(20);
    const v = new DataView(sll.buffer);
    v.setUint16(0, AF_PACKET, true);
    v.setUint16(2, ethertype, false);
    v.setInt32(4, ifindex, true);
    sll[11] = dest.length;
    sll.set(dest, 12);
    for (const f of frames) check(libc().sendto(fd, ptr(f), f.length, 0, ptr(sll), sll.length), "sendto", `interface ${ifindex}`);
  } finally {
    libc().close(fd);
  }
}

const SOCK_DGRAM = 2;
const SIOCGIFINDEX = 0x8933;
const SIOCGIFHWADDR = 0x8927;
const ARPHRD_ETHER = 1;
const IFNAMSIZ = 16;

/**
 * An interface of the calling thread's net namespace: its index and Ethernet address, or null
 * when it has none by that name (or is not Ethernet). Two ioctls on a datagram socket, not an
 * `ip link` process: a migration's restore asks while its pod is frozen.
 */
export function ethernetInterface(name: string): { ifindex: number; mac: Uint8Array } | null {
  const nameBytes = Buffer.from(name);
  if (nameBytes.length === 0 || nameBytes.length >= IFNAMSIZ || nameBytes.includes(0)) return null;
  // struct ifreq: ifr_name[16], then a union (int ifr_ifindex; struct sockaddr ifr_hwaddr), 40 bytes in all.
  const ifreq = () => {
    const r = new Uint8Array(40);
    r.set(nameBytes, 0);
    return r;
  };
  const fd = check(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket(AF_INET, SOCK_DGRAM)");
  try {
    const byIndex = ifreq();
    if (libc().ioctl(fd, BigInt(SIOCGIFINDEX), BigInt(ptr(byIndex))) === -1) return null;
    const hw = ifreq();
    if (libc().ioctl(fd, BigInt(SIOCGIFHWADDR), BigInt(ptr(hw))) === -1) return null;
    const v = new DataView(hw.buffer);
    if (v.getUint16(IFNAMSIZ, true) !== ARPHRD_ETHER) return null;
    return { ifindex: new DataView(byIndex.buffer).getInt32(IFNAMSIZ, true), mac: hw.slice(IFNAMSIZ + 2, IFNAMSIZ + 8) };
  } finally {
    libc().close(fd);
  }
}

const SYS_pidfd_getfd = 438;
const IPPROTO_TCP = 6;
const TCP_REPAIR = 19;
const TCP_REPAIR_OFF = 0;

/**
 * An IPv4 TCP connection's two ends, the next sequence numbers it expects
 * (rcvNxt) and sends (sndNxt), the window field it advertises now, and its
 * current timestamp value (null without the timestamp option).
 */
export interface TcpEnds {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  rcvNxt: number;
  sndNxt: number;
  window: number;
  tsVal: number | null;
}

const TCP_REPAIR_ON = 1;
const TCP_REPAIR_QUEUE = 20;
const TCP_QUEUE_SEQ = 21;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;
const TCP_INFO = 11;
const TCP_TIMESTAMP = 24;
const TCP_REPAIR_WINDOW = 29;
const TCPI_OPT_TIMESTAMPS = 1;
const AF_INET = 2;
const AF_INET6 = 10;

/** Dotted IPv4 of a sockaddr_in or a v4-mapped sockaddr_in6; null for anything else. */
function ipv4Of(sa: Uint8Array): { address: string; port: number } | null {
  const v = new DataView(sa.buffer);
  const family = v.getUint16(0, true);
  const port = v.getUint16(2, false);
  if (family === AF_INET) return { address: [...sa.subarray(4, 8)].join("."), port };
  const mapped = sa.subarray(8, 24);
  if (family === AF_INET6 && mapped.subarray(0, 10).every((b) => b === 0) && mapped[10] === 0xff && mapped[11] === 0xff)
    return { address: [...mapped.subarray(12, 16)].join("."), port };
  return null;
}

function sockaddr(fd: number, call: "getsockname" | "getpeername"): { address: string; port: number } | null {
  const sa = new Uint8Array(28);
  const len = new Uint32Array([sa.length]);
  check(libc()[call](fd, ptr(sa), ptr(len)), call);
  return ipv4Of(sa);
}

function getTcpOpt(fd: number, opt: number, size: number): Uint8Array {
  const buf = new Uint8Array(size);
  const len = new Uint32Array([size]);
  check(libc().getsockopt(fd, IPPROTO_TCP, opt, ptr(buf), ptr(len)), "getsockopt", String(opt));
  return buf;
}

/** The next sequence number of a queue (TCP_RECV_QUEUE: rcv_nxt, TCP_SEND_QUEUE: write_seq) of a socket in repair mode. */
function queueSeq(fd: number, queue: number): number {
  const q = new Int32Array([queue]);
  check(libc().setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, ptr(q), 4), "setsockopt(TCP_REPAIR_QUEUE)");
  return new DataView(getTcpOpt(fd, TCP_QUEUE_SEQ, 4).buffer).getUint32(0, true);
}

/** Sequence numbers, window and timestamp of a socket in repair mode (see TcpEnds). */
function tcpState(fd: number): Pick<TcpEnds, "rcvNxt" | "sndNxt" | "window" | "tsVal"> {
  const rcvNxt = queueSeq(fd, TCP_RECV_QUEUE);
  const sndNxt = queueSeq(fd, TCP_SEND_QUEUE);
  // struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup
  const w = new DataView(getTcpOpt(fd, TCP_REPAIR_WINDOW, 20).buffer);
  const rcvWnd = w.getUint32(12, true);
  const rcvWup = w.getUint32(16, true);
  const info = getTcpOpt(fd, TCP_INFO, 8); // state, ca_state, retransmits, probes, backoff, options, wscales
  const rcvWscale = info[6]! >> 4;
  const free = Math.max(0, (rcvWup + rcvWnd - rcvNxt) | 0);
  const window = Math.min(0xffff, free >>> rcvWscale);
  const tsVal = info[5]! & TCPI_OPT_TIMESTAMPS ? new DataView(getTcpOpt(fd, TCP_TIMESTAMP, 4).buffer).getUint32(0, true) : null;
  return { rcvNxt, sndNxt, window, tsVal };
}

/**
 * Take a TCP socket of process `pid` (its descriptor `fd`) out of repair mode,
 * through a duplicate of it (pidfd_getfd): the kernel then sends a window
 * probe, as CRIU does when it lets a socket go on. Its ends and rcv_nxt are
 * read first (in repair mode, so only while its process is stopped: a write
 * meanwhile would go astray); null when it is not IPv4 or cannot be read.
 */
export function tcpRepairOff(pid: number, fd: number): TcpEnds | null {
  const pidfd = check(libc().syscall(BigInt(SYS_pidfd_open), BigInt(pid), 0n, 0n), "pidfd_open", String(pid));
  try {
    const dup = check(libc().syscall(BigInt(SYS_pidfd_getfd), BigInt(pidfd), BigInt(fd), 0n), "pidfd_getfd", `${pid}/${fd}`);
    try {
      let ends: TcpEnds | null = null;
      try {
        const local = sockaddr(dup, "getsockname");
        const remote = sockaddr(dup, "getpeername");
        const on = new Int32Array([TCP_REPAIR_ON]);
        check(libc().setsockopt(dup, IPPROTO_TCP, TCP_REPAIR, ptr(on), 4), "setsockopt(TCP_REPAIR)");
        const state = tcpState(dup);
        if (local && remote) ends = { local: local.address, localPort: local.port, remote: remote.address, remotePort: remote.port, ...state };
      } catch {
        // not connected, or a state repair mode refuses: nothing to read
      }
      const val = new Int32Array([TCP_REPAIR_OFF]);
      check(libc().setsockopt(dup, IPPROTO_TCP, TCP_REPAIR, ptr(val), 4), "setsockopt(TCP_REPAIR)", `${pid}/${fd}`);
      return ends;
    } finally {
      libc().close(dup);
    }
  } finally {
    libc().close(pidfd);
  }
}

/** ioctl(2) with an integer or pointer argument (a pointer as a number from bun:ffi's ptr). */
export function ioctl(fd: number, request: number, arg: number | bigint, what: string): number {
  return check(libc().ioctl(fd, BigInt(request), BigInt(arg)), `ioctl(${what})`);
}

/** The address of a buffer, for ioctl. */
export function addressOf(buf: Uint8Array | Uint16Array | Int32Array | Uint32Array): number {
  return ptr(buf);
}

const O_RDONLY_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

/**
 * Send IPv4 packets (each its payload after the IP header, to `to`) from raw
 * sockets of their `protocol` opened in the net namespace at `netnsPath`:
 * the calling thread enters it only to open the socket, and the kernel gives
 * the packets the source address that namespace routes them from.
 */
export function sendRawInNetns(netnsPath: string, packets: ReadonlyArray<{ to: string; protocol: number; data: Uint8Array }>): void {
  const fds = new Map<number, number>();
  try {
    for (const { protocol } of packets)
      if (!fds.has(protocol)) fds.set(protocol, socketIn(netnsPath, AF_INET, SOCK_RAW, protocol, `socket(AF_INET, SOCK_RAW) ${protocol}`));
    for (const p of packets) {
      const sin = new Uint8Array(16);
      new DataView(sin.buffer).setUint16(0, AF_INET, true);
      sin.set(p.to.split(".").map(Number), 4);
      check(libc().sendto(fds.get(p.protocol)!, ptr(p.data), p.data.length, 0, ptr(sin), sin.length), "sendto", p.to);
    }
  } finally {
    for (const fd of fds.values()) libc().close(fd);
  }
}

const AF_NETLINK = 16;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

/** Open a socket in the net namespace at `netnsPath` (null: this thread's own): the thread enters it only for the call. */
function socketIn(netnsPath: string | null, family: number, type: number, protocol: number, what: string): number {
  if (netnsPath === null) return check(libc().socket(family, type | SOCK_CLOEXEC, protocol), what);
  const own = check(libc().open(ptr(cstr("/proc/thread-self/ns/net")), O_RDONLY_CLOEXEC, 0), "open", "/proc/thread-self/ns/net");
  try {
    const target = check(libc().open(ptr(cstr(netnsPath)), O_RDONLY_CLOEXEC, 0), "open", netnsPath);
    try {
      check(libc().setns(target, CLONE_NEWNET), "setns", netnsPath);
      try {
        return check(libc().socket(family, type | SOCK_CLOEXEC, protocol), what);
      } finally {
        // Never leave this thread in the pod's namespace: nothing else would work after.
        check(libc().setns(own, CLONE_NEWNET), "setns", "/proc/thread-self/ns/net");
      }
    } finally {
      libc().close(target);
    }
  } finally {
    libc().close(own);
  }
}

/**
 * Send netlink messages (`request`: one or more, whole, with their headers) to
 * the kernel over a socket of `protocol` opened in the net namespace at
 * `netnsPath` (null: this thread's own), and read the answers until one
 * answer (an NLMSG_ERROR, which is also the ACK, or NLMSG_DONE) has come for
 * each sequence number in `awaitSeqs`. Returns every message received, whole.
 * The kernel answers netlink requests while it handles the send: the reads
 * do not wait, unless the kernel does (at most `timeoutMs`).
 */
export function netlinkExchange(
  netnsPath: string | null,
  protocol: number,
  request: Uint8Array,
  awaitSeqs: readonly number[],
  timeoutMs = 5000,
  /** Stop at the first error answer, whatever its sequence number (an nf_tables batch refused as a whole answers only for its begin). */
  isStoppedByError = false,
): Uint8Array[] {
  const fd = socketIn(netnsPath, AF_NETLINK, SOCK_RAW, protocol, `socket(AF_NETLINK, ${protocol})`);
  try {
    const tv = new BigInt64Array([BigInt(Math.floor(timeoutMs / 1000)), BigInt((timeoutMs % 1000) * 1000)]);
    check(libc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, ptr(tv), 16), "setsockopt(SO_RCVTIMEO)");
    const kernel = new Uint8Array(12); // struct sockaddr_nl: family, pad, pid 0 (the kernel), groups 0
    new DataView(kernel.buffer).setUint16(0, AF_NETLINK, true);
    const sent = check(libc().sendto(fd, ptr(request), request.length, 0, ptr(kernel), kernel.length), "sendto", "netlink");
    if (sent !== request.length) throw new Error(`netlink: sent ${sent} of ${request.length} bytes`);
    const waiting = new Set(awaitSeqs);
    const out: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    while (waiting.size > 0) {
      const n = check(libc().recv(fd, ptr(buf), buf.length, 0), "recv", "netlink");
      const v = new DataView(buf.buffer, 0, n);
      for (let at = 0; at + 16 <= n; ) {
        const len = v.getUint32(at, true);
        if (len < 16 || at + len > n) break;
        const type = v.getUint16(at + 4, true);
        const seq = v.getUint32(at + 8, true);
        out.push(buf.slice(at, at + len));
        if (type === NLMSG_ERROR || type === NLMSG_DONE) waiting.delete(seq);
        if (isStoppedByError && type === NLMSG_ERROR && len >= 20 && v.getInt32(at + 16, true) !== 0) waiting.clear();
        at += (len + 3) & ~3;
      }
    }
    return out;
  } finally {
    libc().close(fd);
  }
}

/**
 * A new net namespace, bind-mounted on `path` (an empty file), as `ip netns
 * add` makes one: the calling thread unshares into it only for the mount.
 */
export function makeNetns(path: string): void {
  const own = check(libc().open(ptr(cstr("/proc/thread-self/ns/net")), O_RDONLY_CLOEXEC, 0), "open", "/proc/thread-self/ns/net");
  try {
    check(libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
    try {
      mount("/proc/thread-self/ns/net", path, null, MS.BIND);
    } finally {
      // Never leave this thread in the new namespace: nothing else would work after.
      check(libc().setns(own, CLONE_NEWNET), "setns", "/proc/thread-self/ns/net");
    }
  } finally {
    libc().close(own);
  }
}

/** The index of a network interface of this thread's net namespace, or null when there is none of that name. */
export function interfaceIndex(name: string): number | null {
  const i = libc().if_nametoindex(ptr(cstr(name)));
  return i === 0 ? null : i;
}

/** The system's text for an errno: "File exists". */
export function errnoText(errno: number): string {
  return String(libc().strerror(errno));
}
