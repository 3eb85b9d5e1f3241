import { expect, test } from "bun:test";
import { canonicalPath, whyHostPathIsProtected } from "./host-dirs.ts";

const prot = { stateDir: "/var/lib/autopod", agentFiles: ["/run/autopod.sock"], agentGiven: ["/var/lib/autopod/volumes", "/var/lib/autopod/bases"] };
const mergedUsr = (p: string) => (/^\/(bin|sbin|lib|lib32|lib64|libx32)(\/|$)/.test(p) ? "/usr" + p : p);

test("system directories, anything under them, and anything holding them are refused as volumes", () => {
  for (const bad of [
    "/",
    "/etc",
    "/etc/cron.d",
    "/usr/lib",
    "/var",
    "/var/lib",
    "/var/spool/cron",
    "/boot/efi",
    "/root/.ssh",
    "/proc/1",
    "/run/user/0",
    "/dev/shm",
    "/opt/x",
  ]) {
    expect(whyHostPathIsProtected(bad, "Volume", prot)).not.toBeNull();
  }
  // On a merged-/usr host /lib is /usr/lib: a link to it resolves there, and is refused as /usr.
  expect(whyHostPathIsProtected("/usr/lib/x86_64-linux-gnu", "Volume", prot, mergedUsr)).toContain("host system directory");
});

test("the agent's state, its socket, and their parents are refused, but what the agent gives pods is not", () => {
  expect(whyHostPathIsProtected("/var/lib/autopod", "Volume", prot)).toContain("agent's own");
  expect(whyHostPathIsProtected("/var/lib/autopod/images.local", "Volume", prot)).toContain("agent's own");
  expect(whyHostPathIsProtected("/var/lib/autopod/volumes", "Volume", prot)).toContain("agent's own");
  expect(whyHostPathIsProtected("/var/lib/autopod/volumes/web/vol0", "Volume", { ...prot, stateDir: "/srv/ap" })).not.toBeNull(); // under /var/lib
  const s = { stateDir: "/srv/ap/state", agentFiles: ["/srv/ap/agent.sock"], agentGiven: ["/srv/ap/state/volumes"] };
  expect(whyHostPathIsProtected("/srv/ap/state/volumes/web/vol0", "Volume", s)).toBeNull();
  expect(whyHostPathIsProtected("/srv/ap", "Volume", s)).toContain("holds the autopod agent's own files");
  expect(whyHostPathIsProtected("/srv/ap/agent.sock", "Volume", s)).toContain("agent's own");
});

test("shared parents are refused themselves, their subdirectories are fine", () => {
  for (const bad of ["/home", "/mnt", "/srv", "/tmp", "/var/tmp"]) expect(whyHostPathIsProtected(bad, "Volume", prot)).toContain("every user's data");
  for (const ok of ["/home/alice/data", "/mnt/nfs/shared", "/srv/www", "/tmp/autopod-x/data", "/data"])
    expect(whyHostPathIsProtected(ok, "Volume", prot)).toBeNull();
});

test("a root file system may lie in a system tree, never be / or hold one or the agent's state", () => {
  expect(whyHostPathIsProtected("/", "Root", prot, undefined, true)).toContain("host's root");
  expect(whyHostPathIsProtected("/var", "Root", prot, undefined, true)).toContain("holds");
  expect(whyHostPathIsProtected("/var/lib", "Root", prot, undefined, true)).toContain("holds");
  expect(whyHostPathIsProtected("/usr/share/rootfs", "Root", prot, undefined, true)).toBeNull();
  expect(whyHostPathIsProtected("/var/lib/autopod/bases/abc", "Root", prot, undefined, true)).toBeNull();
  expect(whyHostPathIsProtected("/var/lib/autopod/pods", "Root", prot, undefined, true)).toContain("agent's own");
  expect(whyHostPathIsProtected("/srv/rootfs", "Root", prot, undefined, true)).toBeNull();
});

test("canonicalPath resolves links and dots in the existing prefix and keeps the missing rest", () => {
  const links: Record<string, string> = { "/": "/", "/lib": "/usr/lib", "/srv": "/srv", "/etc": "/etc" };
  const rp = (p: string) => {
    if (p in links) return links[p]!;
    throw new Error("ENOENT");
  };
  expect(canonicalPath("/lib/x/y", rp)).toBe("/usr/lib/x/y");
  expect(canonicalPath("//etc/./cron.d/", rp)).toBe("/etc/cron.d");
  expect(canonicalPath("/srv/../etc", rp)).toBe("/etc");
  expect(canonicalPath("/.", rp)).toBe("/");
});
