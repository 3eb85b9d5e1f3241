/**
 * Issue 16, rows 1 and 2: an image from another host is checked before CRIU
 * restores it. Each attack is a real export from a real agent, edited the way
 * an attacker would (CRIU files or manifest changed, every hash recomputed),
 * imported into a second agent and restored there: the restore is refused
 * with a clear error, and the host, the store and the pods are as they were.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProtoMessage } from "../src/checkpoint/criu-image/protobuf.ts";
import { editCriuFile, fileBytes, type OpenedExport, openExport, replaceCriuFile, setField, writeExport } from "./_hostile.ts";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let source: TestHost;
let target: TestHost;
const scratch = mkdtempSync(join(tmpdir(), "autopod-criu-image-"));
const exported = join(scratch, "good.export");
const victim = join(scratch, "victim");
const VICTIM_TEXT = "a host file nobody may overwrite\n";

/** A shell loop holding its counter in memory, a file of its volume open on fd 3. */
const COUNTER = ["sh", "-c", "exec 3</data/x; i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.02; done"];

beforeAll(async () => {
  if (!isRoot) return;
  source = await TestHost.start("ia");
  target = await TestHost.start("ib");
  mkdirSync(join(scratch, "vol"));
  writeFileSync(join(scratch, "vol", "x"), "volume data\n");
  writeFileSync(victim, VICTIM_TEXT);
  await source.run("web", COUNTER, ["-v", `${join(scratch, "vol")}:/data`]);
  await Bun.sleep(400);
  await source.ok(["checkpoint", "web", "--export", exported]);
}, T);
afterAll(async () => {
  await source?.dispose();
  await target?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** The host's root device, as a volume's mount record names it (e.g. "/dev/vda"). */
function hostRootDevice(): string {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f[4] === "/") return f[f.indexOf("-") + 2] ?? "/dev/vda";
  }
  return "/dev/vda";
}

/** Mounts of this machine under a test host's directory (the pods' roots and binds). */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${dir}/`))
    .sort();
}

function stateListing(h: TestHost): string[] {
  const out: string[] = [];
  for (const d of ["volumes", "bases", "pods"]) {
    const p = join(h.stateDir, d);
    try {
      for (const e of readdirSync(p, { recursive: true })) out.push(`${d}/${e}`);
    } catch {
      // not made yet
    }
  }
  return out.sort();
}

let attempt = 0;

/** Import a hostile edit of the good export into the target host and restore it: returns the refusal. */
async function refused(edit: (x: OpenedExport) => void): Promise<string> {
  const x = openExport(exported);
  edit(x);
  const file = join(scratch, `hostile-${++attempt}.export`);
  const id = writeExport(x, file);
  const podsBefore = (await target.pods()).map((p) => `${p.name}:${p.state}`);
  const imported = await target.ok(["image", "import", file, "--trust"]);
  expect(imported).toBe(id);
  const imagesBefore = await target.ok(["images", "--json"]);
  const mountsBefore = mountsUnder(target.dir);
  const stateBefore = stateListing(target);
  const name = `evil${attempt}`;
  const r = await target.cli(["restore", id.slice(0, 16), "--name", name, "--ip", `${target.prefix}.${40 + attempt}/24`], T);
  expect(r.exitCode).not.toBe(0);
  // Nothing changed: no pod, no mount, nothing in the state directory, the store as it was, the victim intact.
  expect((await target.pods()).map((p) => `${p.name}:${p.state}`)).toEqual(podsBefore);
  expect(mountsUnder(target.dir)).toEqual(mountsBefore);
  expect(stateListing(target)).toEqual(stateBefore);
  expect(await target.ok(["images", "--json"])).toBe(imagesBefore);
  expect(readFileSync(victim, "utf8")).toBe(VICTIM_TEXT);
  await target.ok(["image", "rm", id]);
  return r.stderr.trim();
}

/** The entries of a mountpoints file whose mount point is `at`. */
function mountAt(entries: ProtoMessage[], at: string): ProtoMessage {
  const m = entries.find((e) => new TextDecoder().decode(e.bytes(7, "mount")) === at);
  if (!m) throw new Error(`no mount at ${at}`);
  return m;
}

describe("an image from another host is checked before CRIU runs", () => {
  rootTest(
    "a normal image from another agent restores, its memory intact",
    async () => {
      const id = await target.ok(["image", "import", exported, "--trust"]);
      await target.ok(["restore", id.slice(0, 16), "--name", "moved", "--ip", `${target.prefix}.30/24`], T);
      expect((await target.pod("moved")).state).toBe("running");
      await Bun.sleep(500);
      const r = await target.cli(["exec", "moved", "--", "cat", "/counter"]);
      const xs = r.stdout.split("\n").filter(Boolean).map(Number);
      const bad = xs.findIndex((v, i) => v !== i + 1);
      expect(bad === -1 ? "contiguous" : `line ${bad + 1} is ${xs[bad]}`).toBe("contiguous");
      expect(xs.length).toBeGreaterThan(20);
      expect((await target.cli(["exec", "moved", "--", "cat", "/data/x"])).stdout).toBe("volume data\n");
      await target.ok(["rm", "--force", "moved"]);
    },
    T,
  );

  rootTest(
    "row 1: a restore.log symlink to a host file is refused, and the file is untouched",
    async () => {
      const err = await refused((x) => {
        x.manifest = {
          ...x.manifest,
          criu: [...x.manifest.criu, { ...x.manifest.criu[0]!, path: "restore.log", type: "symlink", target: victim, mode: 0o777 }],
        };
      });
      expect(err).toMatch(/refused: CRIU file "restore\.log" is a symlink to ".*victim"; an image's CRIU files must be regular files/);
    },
    T,
  );

  rootTest(
    "row 1: a regular file named like CRIU's restore output is refused",
    async () => {
      const err = await refused((x) => {
        const stats = x.manifest.criu.find((e) => e.path === "stats-dump")!;
        x.manifest = { ...x.manifest, criu: [...x.manifest.criu, { ...stats, path: "stats-restore" }] };
      });
      expect(err).toContain('CRIU file "stats-restore" is one CRIU writes or follows at restore');
    },
    T,
  );

  rootTest(
    "row 2: a volume's mount turned into ext4 of the host's disk is refused before CRIU runs",
    async () => {
      const dev = hostRootDevice();
      const err = await refused((x) =>
        editCriuFile(x, /^mountpoints-\d+\.img$/, (entries) => {
          const m = mountAt(entries, "/data");
          setField(m, 1, 0); // fstype unsupported: CRIU mounts by fsname
          setField(m, 14, "ext4");
          setField(m, 8, dev);
          setField(m, 6, "/");
          setField(m, 18, undefined); // no longer the external bind autopod maps
          return entries;
        }),
      );
      expect(err).toContain(`is "ext4" of "${dev}" (root "/") at "/data", not the host bind autopod makes there`);
      expect(err).toMatch(/a pod may only mount \/, \/data, \/proc, \/dev/);
    },
    T,
  );

  rootTest(
    "row 2: the host's /etc mounted in the pod (its /tmp made a mount of the host's disk at /etc) is refused",
    async () => {
      const dev = hostRootDevice();
      const err = await refused((x) =>
        editCriuFile(x, /^mountpoints-\d+\.img$/, (entries) => {
          const m = mountAt(entries, "/tmp");
          setField(m, 1, 0);
          setField(m, 14, "ext4");
          setField(m, 8, dev);
          setField(m, 6, "/etc");
          return entries;
        }),
      );
      expect(err).toContain(`is "ext4" of "${dev}" (root "/etc") at "/tmp"`);
      expect(err).toContain('autopod mounts tmpfs of "tmpfs" (root "/") there');
    },
    T,
  );

  rootTest(
    "row 2: an extra mount (a second bind of the volume's key at /host) is refused",
    async () => {
      const err = await refused((x) =>
        editCriuFile(x, /^mountpoints-\d+\.img$/, (entries) => {
          const copy = new ProtoMessage();
          for (const [k, v] of mountAt(entries, "/data").fields) copy.fields.set(k, [...v]);
          setField(copy, 2, 4242);
          setField(copy, 7, "/host");
          return [...entries, copy];
        }),
      );
      expect(err).toMatch(/mount \d+ is .* at "\/host"; a pod may only mount/);
    },
    T,
  );

  rootTest(
    "row 2: CAP_SYS_ADMIN in a task's capabilities, beyond the pod's bounding set, is refused",
    async () => {
      const err = await refused((x) =>
        editCriuFile(x, "core-1.img", (entries) => {
          const core = entries[0]!;
          const thread = core.message(5, "thread core")!;
          const creds = thread.message(10, "creds")!;
          for (const set of [10, 11, 12]) {
            const words = creds.uint32s(set, "caps");
            creds.fields.set(set, [
              { wire: 0, value: BigInt(((words[0] ?? 0) | (1 << 21)) >>> 0) },
              { wire: 0, value: BigInt(words[1] ?? 0) },
            ]);
          }
          setField(thread, 10, creds);
          setField(core, 5, thread);
          return entries;
        }),
      );
      expect(err).toContain('core-1.img entry 1 ("sh") has CAP_SYS_ADMIN in its bounding set');
    },
    T,
  );

  rootTest(
    "row 2: an open file outside the pod's root and volumes is refused",
    async () => {
      const err = await refused((x) =>
        editCriuFile(x, "files.img", (entries) => {
          const f = entries.find((e) => new TextDecoder().decode(e.message(3, "reg")?.bytes(6, "name")) === "/data/x")!;
          const reg = f.message(3, "reg")!;
          setField(reg, 6, "/data/../../../../etc/shadow");
          setField(f, 3, reg);
          return entries;
        }),
      );
      expect(err).toContain('opens "/data/../../../../etc/shadow", which is not an absolute path inside the pod');
    },
    T,
  );

  rootTest(
    "row 2: an open file claimed to be on a mount it is not under is refused",
    async () => {
      const err = await refused((x) =>
        editCriuFile(x, "files.img", (entries) => {
          const f = entries.find((e) => new TextDecoder().decode(e.message(3, "reg")?.bytes(6, "name")) === "/data/x")!;
          const reg = f.message(3, "reg")!;
          setField(reg, 6, "/etc/shadow");
          setField(f, 3, reg);
          return entries;
        }),
      );
      expect(err).toMatch(/opens "\/etc\/shadow" on mount \d+, which is mounted at "\/data": the file is not on it/);
    },
    T,
  );

  rootTest(
    "row 2: a block device node in the pod's /dev (its tmpfs archive edited) is refused before tar unpacks it",
    async () => {
      // The pod's own /dev archive, unpacked, with a node of the host's root disk added, packed again.
      const x0 = openExport(exported);
      const dev = x0.manifest.criu.filter((e) => /^tmpfs-dev-\d+\.tar\.gz\.img$/.test(e.path)).sort((a, b) => b.size - a.size)[0]!;
      const dir = join(scratch, "devtar");
      mkdirSync(dir);
      writeFileSync(join(scratch, "dev.tar.gz"), fileBytes(x0, dev));
      expect(Bun.spawnSync(["tar", "--extract", "--gzip", "-f", join(scratch, "dev.tar.gz"), "-C", dir]).exitCode).toBe(0);
      const rdev = statSync(hostRootDevice()).rdev;
      const [major, minor] = [(rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)];
      expect(Bun.spawnSync(["mknod", join(dir, "sda"), "b", String(major), String(minor)]).exitCode).toBe(0);
      const tar = Bun.spawnSync(["tar", "--create", "--gzip", "-C", dir, "."], { stdout: "pipe" });
      expect(tar.exitCode).toBe(0);
      const err = await refused((x) => replaceCriuFile(x, dev.path, new Uint8Array(tar.stdout)));
      expect(err).toMatch(/tmpfs-dev-\d+\.tar\.gz\.img entry \d+ "\.\/sda" is a block device; a pod cannot make device nodes/);
    },
    T,
  );
});
