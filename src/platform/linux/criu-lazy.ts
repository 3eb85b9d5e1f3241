/**
 * CRIU's post-copy pair, each given one end of a unix socket the agent listens
 * on (--ps-socket): `criu dump --lazy-pages` serves the pages it left out of
 * its images, `criu lazy-pages` fetches them for `criu restore --lazy-pages`.
 * CRIU never listens on or connects to a TCP port of its own; the agents carry
 * the bytes between hosts (src/migrate/page-link.ts). Readiness comes through
 * --status-fd, given a plain file CRIU writes one byte to.
 */
import { closeSync, openSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LazyCriu, LazyDumpOptions, LazyPagesOptions } from "../checkpoint-host.ts";
import { dumpArgv, errorFrom, outputOf } from "./criu-runner.ts";
import { connectUnix } from "./libc.ts";

/** How often the status file is looked at while CRIU gets ready. */
const STATUS_POLL_MS = 5;

export function lazyDumpArgv(o: LazyDumpOptions, socketFd: number, statusFd: number): string[] {
  // -v2: at -v4 the page server logs every request, hundreds of thousands for a big pod.
  const argv = dumpArgv({ ...o, leave: "stopped" }).map((a) => (a === "-v4" ? "-v2" : a));
  argv.push("--lazy-pages", "--ps-socket", String(socketFd), "--status-fd", String(statusFd));
  return argv;
}

export function lazyPagesArgv(o: LazyPagesOptions, socketFd: number, statusFd: number): string[] {
  return [
    o.criu,
    "lazy-pages",
    "-D",
    o.imagesDir,
    "-W",
    o.workDir,
    "-o",
    "lazy-pages.log",
    "-v2",
    "--page-server",
    "--ps-socket",
    String(socketFd),
    "--status-fd",
    String(statusFd),
  ];
}

function spawnLazy(
  argv: (socketFd: number, statusFd: number) => string[],
  pageSocket: string,
  statusFile: string,
  logFile: string,
  action: "dump" | "restore",
): LazyCriu {
  const socket = connectUnix(pageSocket);
  const status = openSync(statusFile, "w", 0o600);
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    // Bun.spawn passes extra stdio entries as fds 3, 4, ... in the child.
    proc = Bun.spawn(argv(3, 4), { stdio: ["ignore", "pipe", "pipe", socket, status] });
  } finally {
    closeSync(socket);
    closeSync(status);
  }
  const started = performance.now();
  const done = (async () => {
    const [, stderr, code] = await outputOf(proc as Parameters<typeof outputOf>[0]);
    if (code !== 0) throw await errorFrom(action, code, logFile, stderr);
  })();
  let isExited = false;
  done.then(
    () => {
      isExited = true;
    },
    () => {
      isExited = true;
    },
  );
  const ready = new Promise<void>((resolve, reject) => {
    const look = () => {
      let size = 0;
      try {
        size = statSync(statusFile).size;
      } catch {}
      if (size > 0) return resolve();
      if (isExited) {
        done.then(() => reject(new Error(`criu ${action} exited before it was ready (after ${Math.round(performance.now() - started)} ms)`)), reject);
        return;
      }
      setTimeout(look, STATUS_POLL_MS);
    };
    look();
  });
  ready.catch(() => undefined);
  done.catch(() => undefined);
  return { pid: proc.pid, ready, done, kill: () => proc.kill("SIGKILL") };
}

/** `criu dump --lazy-pages --leave-stopped`; `ready` once the images are written. */
export function criuDumpLazy(o: LazyDumpOptions): LazyCriu {
  const c = spawnLazy((s, f) => lazyDumpArgv(o, s, f), o.pageSocket, `${o.imagesDir}.status`, join(o.imagesDir, "dump.log"), "dump");
  o.onSpawn?.(c.pid);
  return c;
}

/** `criu lazy-pages`; `ready` once it listens for the restore. */
export function criuLazyPages(o: LazyPagesOptions): LazyCriu {
  return spawnLazy((s, f) => lazyPagesArgv(o, s, f), o.pageSocket, join(dirname(o.workDir), "lazy-pages.status"), join(o.workDir, "lazy-pages.log"), "restore");
}
