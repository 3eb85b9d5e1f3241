/**
 * An in-memory CheckpointHost for unit tests of checkpoint, restore and
 * recovery: a CRIU that writes a small image set and "restores" a process
 * into the pod host's fake process table, network locks as sets, and a log of
 * every call in order. Failures are set per test (failDump, failRestore, ...).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CheckpointHost, CriuDumpOptions, CriuRestoreOptions, LazyCriu, TcpConnection } from "../platform/checkpoint-host.ts";
import type { FakeHost } from "../pods/fake-host.ts";

export class FakeCheckpointHost implements CheckpointHost {
  /** Every call, in order: "dump 1000", "lockNetwork /run/netns/x", ... Tests may push their own marks. */
  readonly calls: string[] = [];
  /** Net namespaces under our own lock. */
  readonly locked = new Set<string>();
  /** Net namespaces with a lock a failed CRIU run left. */
  readonly criuLocked = new Set<string>();
  /** Pids whose pod tasks are stopped (by a dump or a restore). */
  readonly stopped = new Set<number>();
  /** Live CRIU processes (started by an agent that died). */
  readonly criuProcs = new Set<number>();
  criuPath: string | null = "/usr/local/sbin/criu";
  version: string | null = "4.2.1";
  kernel = "6.18.0";
  flags = ["avx2", "fpu", "sse4_2"];
  /** More files each dump writes (e.g. a tmpfs-dev-N.tar.gz.img). */
  dumpFiles: Record<string, string | Uint8Array> = {};
  /** Programs this host lacks (findProgram answers null). */
  missingPrograms = new Set<string>();
  /** Why the kernel has no nftables, when a test says so. */
  noNftables: string | null = null;
  free = 2 ** 40;
  /** The page image a dump writes (bytes); 4 MiB and more is adopted by the store as a pack and linked back at restore. */
  pages: Uint8Array = new Uint8Array(8192).fill(7);
  /** Set to make the next dumps (or restores) fail with this message, as CRIU would. */
  failDump: string | null = null;
  failRestore: string | null = null;
  /** Called inside the dump, after the images are written (a test's chance to act mid-dump). */
  duringDump: (() => void | Promise<void>) | null = null;
  /** A verb ("dump", "restore", "lockNetwork", "unlockNetwork") whose call never returns: the agent dies there. */
  hangAt: string | null = null;
  nextCriuPid = 50_000;
  nextRestoredPid = 70_000;

  constructor(readonly pods: FakeHost) {}

  findCriu(): string | null {
    return this.criuPath;
  }
  async criuVersion(): Promise<string | null> {
    return this.version;
  }
  kernelRelease(): string {
    return this.kernel;
  }
  cpuFlags(): string[] {
    return [...this.flags];
  }
  findProgram(name: string): string | null {
    return this.missingPrograms.has(name) ? null : `/usr/bin/${name}`;
  }
  async whyNoNftables(): Promise<string | null> {
    return this.noNftables;
  }
  freeBytes(): number {
    return this.free;
  }

  async dump(o: CriuDumpOptions): Promise<{ durationMs: number }> {
    this.calls.push(`dump ${o.pid} leave=${o.leave}`);
    const criuPid = this.nextCriuPid++;
    this.criuProcs.add(criuPid);
    o.onSpawn?.(criuPid);
    // CRIU freezes the tasks while it dumps them.
    this.stopped.add(o.pid);
    writeFileSync(join(o.imagesDir, "inventory.img"), "inventory");
    writeFileSync(join(o.imagesDir, "pages-1.img"), this.pages, { mode: 0o600 });
    writeFileSync(join(o.imagesDir, "dump.log"), "log");
    for (const [name, data] of Object.entries(this.dumpFiles)) writeFileSync(join(o.imagesDir, name), data);
    await this.duringDump?.();
    await this.#hang("dump");
    this.criuProcs.delete(criuPid);
    if (this.failDump) {
      // CRIU resumes the tasks when it fails, and may leave its network lock behind.
      this.stopped.delete(o.pid);
      this.criuLocked.add(`netns-inode:${o.netnsInode}`);
      throw new Error(this.failDump);
    }
    if (o.leave === "running") this.stopped.delete(o.pid);
    if (o.leave === null) this.#end(o.pid);
    return { durationMs: 5 };
  }

  dumpLazy(): LazyCriu {
    throw new Error("the fake checkpoint host has no post-copy");
  }

  lazyPages(): LazyCriu {
    throw new Error("the fake checkpoint host has no post-copy");
  }

  async restore(o: CriuRestoreOptions): Promise<{ pid: number; durationMs: number }> {
    this.calls.push(`restore ${o.netnsPath} tcp=${o.tcpEstablished} stopped=${o.leaveStopped ?? false}`);
    const criuPid = this.nextCriuPid++;
    this.criuProcs.add(criuPid);
    o.onSpawn?.(criuPid);
    if (this.failRestore) {
      this.criuProcs.delete(criuPid);
      this.criuLocked.add(o.netnsPath);
      throw new Error(this.failRestore);
    }
    const pid = this.nextRestoredPid++;
    this.pods.adopt(pid, pid * 10);
    if (o.leaveStopped) this.stopped.add(pid);
    writeFileSync(join(o.workDir ?? o.imagesDir, "restore.pid"), `${pid}\n`);
    await this.#hang("restore");
    this.criuProcs.delete(criuPid);
    return { pid, durationMs: 3 };
  }

  async lockNetwork(netnsPath: string): Promise<void> {
    this.calls.push(`lockNetwork ${netnsPath}`);
    await this.#hang("lockNetwork");
    this.locked.add(netnsPath);
  }
  async unlockNetwork(netnsPath: string): Promise<void> {
    this.calls.push(`unlockNetwork ${netnsPath}`);
    await this.#hang("unlockNetwork");
    this.locked.delete(netnsPath);
  }
  async removeCriuLock(netnsPath: string): Promise<string[]> {
    this.calls.push(`removeCriuLock ${netnsPath}`);
    const had = this.criuLocked.delete(netnsPath);
    // A dump's leftover lock is known by the namespace's inode: the fake has one namespace inode.
    const hadDump = this.criuLocked.delete(`netns-inode:${this.pods.netnsInode()}`);
    return had || hadDump ? ["inet CRIU-1"] : [];
  }

  continueTree(pid: number): TcpConnection[] {
    this.calls.push(`continue ${pid}`);
    this.stopped.delete(pid);
    return [];
  }
  nudgePeers(): void {}
  killTree(pid: number): void {
    this.calls.push(`kill ${pid}`);
    this.#end(pid);
  }
  /** Exec sessions the fake reports for any pod (tests set it). */
  sessions: Array<{ pid: number; command: string }> = [];
  undumpable: Array<{ pid: number; command: string; resource: "io_uring" }> = [];
  undumpableResources(_pid: number): Array<{ pid: number; command: string; resource: "io_uring" }> {
    return this.undumpable;
  }
  execSessions(_pid: number): Array<{ pid: number; command: string }> {
    return this.sessions;
  }
  killSession(pid: number): void {
    this.calls.push(`killSession ${pid}`);
    this.sessions = this.sessions.filter((s) => s.pid !== pid);
  }
  async waitGone(pid: number): Promise<boolean> {
    this.calls.push(`waitGone ${pid}`);
    return true;
  }
  isAlive(pid: number): boolean {
    const p = this.pods.procs.get(pid);
    return p !== undefined && p.exit === null;
  }
  async killCriu(pid: number): Promise<void> {
    this.calls.push(`killCriu ${pid}`);
    this.criuProcs.delete(pid);
  }

  async #hang(verb: string): Promise<void> {
    if (this.hangAt === verb) await new Promise(() => {});
  }

  #end(pid: number): void {
    this.stopped.delete(pid);
    if (this.pods.procs.get(pid)?.exit === null) this.pods.exit(pid, { code: null, signal: 9 });
  }

  /** The calls that name one of these verbs, in order (a test's view of the protocol). */
  callsOf(...verbs: string[]): string[] {
    return this.calls.filter((c) => verbs.includes(c.split(" ")[0]!));
  }
}

/** A directory tree to serve as a pod's base root: the FakeHost accepts it as the rootfs with `sleep` in it. */
export function makeFakeBase(pods: FakeHost, dir: string): string {
  mkdirSync(join(dir, "bin"), { recursive: true });
  writeFileSync(join(dir, "bin/sleep"), "#!/bin/sleep\n");
  pods.paths.set(dir, "dir");
  pods.paths.set(join(dir, "bin/sleep"), "file");
  return dir;
}
