/**
 * No pod gets a host system directory or the agent's own files, however the
 * path is spelled: not with `run -v` or `run --rootfs`, and not as the shared
 * volume of an image made elsewhere (a real export, rebuilt around an edited
 * manifest with every hash right).
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestHost, testRootfs } from "./_pods.ts";
import { rebuildExport } from "./_rebuild-export.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let host: TestHost;
let other: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  [host, other] = await Promise.all([TestHost.start("h"), TestHost.start("g")]);
}, T);
afterAll(async () => {
  await Promise.all([host?.dispose(), other?.dispose()]);
}, 180_000);

async function snapshot(h: TestHost) {
  const ls = (d: string) => (existsSync(join(h.stateDir, d)) ? readdirSync(join(h.stateDir, d)).sort() : []);
  return {
    pods: (await h.pods()).map((p) => `${p.name} ${p.state} ${p.address}`).sort(),
    images: await h.ok(["images", "--json"]),
    dirs: { pods: ls("pods"), volumes: ls("volumes"), bases: ls("bases"), netns: h.podNetnses().sort() },
  };
}

rootTest(
  "run refuses system directories, the agent's state and socket, and the host's root, by any spelling",
  async () => {
    const linkToEtc = join(host.dir, "link-to-etc");
    const linkToRoot = join(host.dir, "link-to-root");
    symlinkSync("/etc", linkToEtc);
    symlinkSync("/", linkToRoot);
    const before = await snapshot(host);
    const volumes: Array<[string, RegExp]> = [
      ["/etc/cron.d", /host system directory/],
      ["//etc", /host system directory/],
      ["/./etc/../etc/cron.d", /host system directory/],
      [`${linkToEtc}/cron.d`, /host system directory/],
      ["/var/spool", /host system directory/],
      ["/usr/lib", /host system directory/],
      ["/.", /host's root directory/],
      ["/var", /holds the host system directory/],
      [host.stateDir, /agent's own/],
      [`${host.stateDir}/images.local`, /agent's own/],
      [`${host.stateDir}/..`, /holds the autopod agent's own files/],
      [host.socket, /agent's own/],
      // Here /tmp also holds the test agent's state.
      ["/tmp", /every user's data|holds the autopod agent's own files/],
      ["/home", /every user's data/],
    ];
    for (const [v, why] of volumes) {
      if (v.endsWith("images.local")) writeFileSync(v, "");
      const r = await host.cli(["run", "bad", "--rootfs", testRootfs(), "-v", `${v}:/x`, "--", "sleep", "1"]);
      expect(r.exitCode, v).toBe(2);
      expect(r.stderr).toMatch(why);
    }
    for (const [root, why] of [
      ["/", /host's root directory/],
      ["/.", /host's root directory/],
      ["//", /host's root directory/],
      [linkToRoot, /host's root directory/],
      ["/var", /holds the host system directory/],
      [host.dir, /holds the autopod agent's own files/],
      [join(host.stateDir, "tmp"), /agent's own/],
    ] as const) {
      const r = await host.cli(["run", "bad", "--rootfs", root, "--", "/bin/sh", "-c", "sleep 1"]);
      expect(r.exitCode, root).toBe(2);
      expect(r.stderr).toMatch(why);
    }
    expect(await snapshot(host)).toEqual(before);
  },
  T,
);

rootTest(
  "an image from another host whose shared volume is a system directory by another spelling is refused, and the host is untouched",
  async () => {
    // The attack of the issue, built the way an attacker would: a pod with a harmless volume,
    // exported with it excluded (shared storage), the manifest edited to name a system directory.
    const shared = join(host.dir, "shared");
    mkdirSync(shared);
    await host.run("cron", ["sleep", "1000"], ["-v", `${shared}:/cron`]);
    const exported = join(host.dir, "cron.apod");
    await host.ok(["checkpoint", "cron", "--leave-running", "--exclude-volume", "/cron", "--export", exported]);
    const linkToEtc = join(other.dir, "link-to-etc");
    symlinkSync("/etc", linkToEtc);
    const cronBefore = readdirSync("/etc/cron.d").sort();
    for (const [i, target] of ["/etc/cron.d", "//etc", "/.", "/etc/./cron.d/", "/srv/../etc", `${linkToEtc}/cron.d`, other.stateDir].entries()) {
      const evil = join(other.dir, `evil${i}.apod`);
      const id = rebuildExport(exported, evil, (m) => {
        const vols = m.pod.volumes as Array<{ host: string; pod: string }>;
        vols.find((v) => v.pod === "/cron")!.host = target;
      });
      expect(await other.ok(["image", "import", evil, "--trust"])).toBe(id);
      const before = await snapshot(other);
      const r = await other.cli(["restore", id.slice(0, 12), "--name", `evil${i}`, "--ip", `${other.prefix}.${60 + i}/24`], T);
      expect(r.exitCode, target).not.toBe(0);
      expect(r.stderr).toContain("will not give a pod that host directory");
      expect(await snapshot(other)).toEqual(before);
    }
    expect(readdirSync("/etc/cron.d").sort()).toEqual(cronBefore);
  },
  T,
);
