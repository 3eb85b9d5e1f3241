/**
 * PathWatcher on real directories (inotify through fs.watch), and with a fake
 * file system for the failures a real one rarely shows.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PathWatcher, type WatchFs } from "./watch.ts";

const dirs: string[] = [];
const watchers: PathWatcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeRoot(): string {
  const d = mkdtempSync(join(tmpdir(), "autopod-watch-"));
  dirs.push(d);
  mkdirSync(join(d, "var/lib/dpkg"), { recursive: true });
  mkdirSync(join(d, "var/lib/apt/lists"), { recursive: true });
  mkdirSync(join(d, "run"), { recursive: true });
  writeFileSync(join(d, "var/lib/dpkg/status"), "Package: a\n");
  return d;
}

function watcher(paths: string[], fs?: WatchFs) {
  const seen: string[] = [];
  const w = new PathWatcher(paths, (p) => seen.push(p), { fs });
  watchers.push(w);
  return { w, seen };
}

async function until(cond: () => boolean, ms = 2_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a watch event");
    await Bun.sleep(10);
  }
}

/** Let events that are coming arrive. */
const settle = () => Bun.sleep(150);

describe("PathWatcher", () => {
  test("a database replaced by rename is seen; other files beside it are not", async () => {
    const root = fakeRoot();
    const status = join(root, "var/lib/dpkg/status");
    const { w, seen } = watcher([status]);
    expect(w.arm()).toBe(1);
    writeFileSync(join(root, "var/lib/dpkg/lock-frontend"), "");
    writeFileSync(join(root, "var/lib/dpkg/other"), "x");
    await settle();
    expect(seen).toEqual([]);
    writeFileSync(join(root, "var/lib/dpkg/status-new"), "Package: b\n");
    renameSync(join(root, "var/lib/dpkg/status-new"), status);
    await until(() => seen.length > 0);
    expect(new Set(seen)).toEqual(new Set([status]));
  });

  test("a file that appears later (a reboot sentinel) is seen", async () => {
    const root = fakeRoot();
    const sentinel = join(root, "run/reboot-required");
    const { w, seen } = watcher([sentinel]);
    w.arm();
    writeFileSync(sentinel, "*** System restart required ***\n");
    await until(() => seen.includes(sentinel));
  });

  test("a watched directory: any change in it, but not its lock or download area", async () => {
    const root = fakeRoot();
    const lists = join(root, "var/lib/apt/lists");
    const { w, seen } = watcher([lists]);
    w.arm();
    expect(w.watching).toEqual([join(root, "var/lib/apt"), lists]);
    writeFileSync(join(lists, "lock"), "");
    mkdirSync(join(lists, "partial"));
    await settle();
    expect(seen).toEqual([]);
    writeFileSync(join(lists, "partial/mirror.example_dists_bookworm_InRelease"), "x");
    await settle();
    expect(seen).toEqual([]);
    renameSync(join(lists, "partial/mirror.example_dists_bookworm_InRelease"), join(lists, "mirror.example_dists_bookworm_InRelease"));
    await until(() => seen.includes(join(lists, "mirror.example_dists_bookworm_InRelease")));
  });

  test("a directory missing at first is watched as soon as it appears, and its appearance is a change", async () => {
    const root = fakeRoot();
    const rpm = join(root, "var/lib/rpm");
    const { w, seen } = watcher([rpm]);
    w.arm();
    expect(w.watching).toEqual([join(root, "var/lib")]);
    mkdirSync(rpm);
    await until(() => seen.includes(rpm)); // the parent saw it made, and watched it
    expect(w.watching).toEqual([join(root, "var/lib"), rpm]);
    writeFileSync(join(rpm, "rpmdb.sqlite"), "x");
    await until(() => seen.includes(join(rpm, "rpmdb.sqlite")));
  });

  test("a parent that does not exist yet: nothing watched, then picked up by arm()", async () => {
    const root = fakeRoot();
    const installed = join(root, "lib/apk/db/installed");
    const { w, seen } = watcher([installed]);
    expect(w.arm()).toBe(0);
    mkdirSync(join(root, "lib/apk/db"), { recursive: true });
    expect(w.arm()).toBe(1);
    expect(seen).toEqual([installed]);
    writeFileSync(installed, "P:musl\n");
    await until(() => seen.length > 1);
  });

  test("a directory removed and made again is watched again", async () => {
    const root = fakeRoot();
    const boot = join(root, "boot");
    mkdirSync(boot);
    const { w, seen } = watcher([boot]);
    w.arm();
    rmSync(boot, { recursive: true });
    mkdirSync(boot); // often with the old inode number
    await until(() => seen.includes(boot));
    await settle();
    seen.length = 0;
    writeFileSync(join(boot, "vmlinuz-6.1.0-99-amd64"), "x");
    await until(() => seen.includes(join(boot, "vmlinuz-6.1.0-99-amd64")));
    // Removed and left so: no watch, until it is back.
    rmSync(boot, { recursive: true });
    await until(() => !w.watching.includes(boot));
    mkdirSync(boot);
    await until(() => w.watching.includes(boot));
    writeFileSync(join(boot, "vmlinuz-6.1.0-100-amd64"), "x");
    await until(() => seen.includes(join(boot, "vmlinuz-6.1.0-100-amd64")));
  });

  test("two names for one directory (/var/run and /run) share one watch", () => {
    const root = fakeRoot();
    symlinkSync("../run", join(root, "var/run"));
    const { w } = watcher([join(root, "run/reboot-required"), join(root, "var/run/reboot-needed")]);
    expect(w.arm()).toBe(1);
  });

  test("a watch that fails is dropped, counted as a change, and made again by arm(); one that cannot be made is retried", () => {
    const handles: Array<{ dir: string; onError: (e: unknown) => void; closed: boolean }> = [];
    let refuse = true;
    const fs: WatchFs = {
      dir: (p) => (p === "/h/var/lib/dpkg" ? { real: p, ino: 7 } : null),
      watch(dir, _onEvent, onError) {
        if (refuse) throw Object.assign(new Error("ENOSPC: inotify watch limit reached"), { code: "ENOSPC" });
        const h = { dir, onError, closed: false };
        handles.push(h);
        return { close: () => (h.closed = true) };
      },
    };
    const { w, seen } = watcher(["/h/var/lib/dpkg/status"], fs);
    expect(w.arm()).toBe(0);
    refuse = false;
    expect(w.arm()).toBe(1);
    expect(seen).toEqual(["/h/var/lib/dpkg/status"]);
    seen.length = 0;
    handles[0]!.onError(new Error("watch broke"));
    expect(handles[0]!.closed).toBe(true);
    expect(w.watching).toEqual([]);
    expect(seen).toEqual(["/h/var/lib/dpkg"]);
    expect(w.arm()).toBe(1);
    expect(handles).toHaveLength(2);
    w.close();
    expect(handles[1]!.closed).toBe(true);
  });
});
