/**
 * A pod name from `restore --name` or from an image's manifest is checked
 * before anything is written or deleted with it: a name that climbs out of the
 * state directory touches nothing on the host, in the store or in the pods.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { rebuildExport } from "./_rebuild-export.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let host: TestHost;
let other: TestHost;
let exported = "";
let imageId = "";

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("n");
  other = await TestHost.start("o");
  const vol = join(host.dir, "data");
  mkdirSync(vol);
  writeFileSync(join(vol, "payload"), "from the image\n");
  await host.run("src", ["sleep", "1000"], ["-v", `${vol}:/data`]);
  exported = join(host.dir, "src.apod");
  imageId = (await host.ok(["checkpoint", "src", "--leave-running", "--export", exported])).split("\n")[0]!;
}, T);
afterAll(async () => {
  await Promise.all([host?.dispose(), other?.dispose()]);
}, 180_000);

/** What a refused restore must leave as it was. */
async function snapshot(h: TestHost) {
  const ls = (d: string) => (existsSync(join(h.stateDir, d)) ? readdirSync(join(h.stateDir, d)).sort() : []);
  return {
    pods: (await h.pods()).map((p) => `${p.name} ${p.state} ${p.address}`).sort(),
    images: await h.ok(["images", "--json"]),
    dirs: { pods: ls("pods"), volumes: ls("volumes"), journal: ls("journal"), tmp: ls("tmp"), top: readdirSync(h.dir).sort() },
  };
}

rootTest(
  "restore --name ../../victim says Invalid pod name and deletes nothing outside the state directory",
  async () => {
    // The journal lives in <state>/journal: "../../victim" would name <dir>/victim.json.
    const victim = join(host.dir, "victim.json");
    writeFileSync(victim, "precious\n");
    const before = await snapshot(host);
    for (const name of ["../../victim", "../../../../x/victim", "a/b", ".."]) {
      const r = await host.cli(["restore", imageId.slice(0, 12), "--name", name, "--ip", `${host.prefix}.50/24`]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`Invalid pod name "${name}"`);
    }
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(await snapshot(host)).toEqual(before);
  },
  T,
);

rootTest(
  "an imported image whose manifest names the pod ../../x puts nothing outside the state directory",
  async () => {
    const evil = join(other.dir, "evil.apod");
    const id = rebuildExport(exported, evil, (m) => {
      m.pod.name = "../../x";
    });
    expect((await other.ok(["image", "import", evil, "--trust"])).trim()).toBe(id);
    const before = await snapshot(other);
    const r = await other.cli(["restore", id.slice(0, 12), "--ip", `${other.prefix}.51/24`], T);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('Invalid pod name "../../x"');
    // <state>/volumes/../../x/vol0 would be <dir>/x/vol0, with the image's volume in it.
    expect(existsSync(join(other.dir, "x"))).toBe(false);
    expect(await snapshot(other)).toEqual(before);
    rmSync(evil);
  },
  T,
);
