/**
 * Structure-aware mutations of a real export: the container's frames, the
 * manifest's typed fields (names, paths, modes, sizes, chunk lists, counts,
 * types, versions), the chunk table, and the protobuf fields of the CRIU image
 * files inside it. Every mutation is applied to the decoded model and the
 * export is rebuilt with correct hashes, unless the mutation is of a hash.
 */
import { mutateCriuFile, mutateRaw } from "./criu-image.ts";
import { type ExportLayout, type ExportModel, fileBytes, layoutOf, type RawEntry, rawTrees, serialize, setFileBytes } from "./export-file.ts";
import { INTERESTING_INTS } from "./protobuf.ts";
import { clone, type Rng } from "./rng.ts";

export type Layer = "container" | "manifest" | "chunks" | "criu";
export const LAYERS: readonly Layer[] = ["container", "manifest", "chunks", "criu"];

/** Where mutated paths may point on the host: only into the test's own canary directory. */
export interface FuzzTargets {
  /** A directory the test owns and watches; escapes land here. */
  canary: string;
  /** Names of local pods an image must not take over. */
  localPods: string[];
}

export interface Mutant {
  bytes: Uint8Array;
  layers: Layer[];
  ops: string[];
}

/** Strings for names, paths and protobuf string fields: escapes that land only in the canary directory. */
export function dictionary(t: FuzzTargets): string[] {
  const up = "../".repeat(12);
  return [
    "",
    ".",
    "..",
    "/",
    "/.",
    "//tmp",
    "/tmp/",
    "/proc/self/root",
    "/proc/1/root",
    `${t.canary}`,
    `${t.canary}/victim`,
    `${t.canary}/new-file`,
    `${t.canary}/dir`,
    `${up}${t.canary.slice(1)}/victim`,
    `${up}${t.canary.slice(1)}/escape`,
    `../${"x".repeat(3)}`,
    "a/../../b",
    "a//b",
    "./a",
    "x".repeat(256),
    "y/".repeat(2100),
    "x\0y",
    "\x1b[2J\x1b[31mred",
    "ok-name",
    "web",
    ...t.localPods,
    "tmpfs",
    "proc",
    "overlay",
    "bind",
    "ext4",
    "sysfs",
    "devpts",
    "mqueue",
    "cgroup2",
    "none",
    "rw,suid,dev",
    "lowerdir=/,upperdir=/tmp,workdir=/tmp",
    "10.213.0.1/24",
    "127.0.0.1/8",
    "0.0.0.0/0",
    "::1/128",
    "not an address",
    "restore.log",
    "inventory.img",
    "pages-1.img",
  ];
}

const ENTRY_TYPES = ["file", "dir", "symlink", "hardlink", "whiteout", "fifo", "chardev", "blockdev", "socket", "", 7];
const TOP_KEYS = ["format", "autopodVersion", "criuVersion", "kernelRelease", "cpuFlags", "createdAt", "parent", "pod", "criu", "rootfs", "base", "volumes"];
const POD_KEYS = ["name", "command", "env", "ip", "hostname", "limits", "volumes", "rootfs", "rootKind", "workdir"];
const ENTRY_KEYS = ["path", "type", "mode", "uid", "gid", "mtimeMs", "size", "chunkSize", "chunks", "target", "opaque"];

/** A value of some other type, or an edge of the same one. */
function oddValue(rng: Rng, strings: readonly string[]): unknown {
  switch (rng.below(12)) {
    case 0:
      return null;
    case 1:
      return rng.pick(strings);
    case 2:
      return Number(rng.pick(INTERESTING_INTS));
    case 3:
      return -1;
    case 4:
      return rng.pick([Number.NaN, Number.POSITIVE_INFINITY, -0, 1.5, 2 ** 53 + 2]);
    case 5:
      return rng.pick(INTERESTING_INTS);
    case 6:
      return [];
    case 7:
      return {};
    case 8:
      return rng.bytes(rng.below(40));
    case 9:
      return true;
    case 10:
      return [rng.pick(strings)];
    default:
      return { [rng.pick(strings)]: rng.pick(strings) };
  }
}

function intEdge(rng: Rng, v: unknown): unknown {
  const n = typeof v === "number" ? v : 0;
  return rng.pick([
    0,
    1,
    -1,
    n + 1,
    n - 1,
    n * 2,
    0o7777,
    0o4755,
    0o6777,
    0o10000,
    4095,
    4096,
    65536,
    2 ** 24,
    2 ** 24 + 1,
    2 ** 32,
    2 ** 44,
    2 ** 44 + 1,
    2 ** 53,
    0xffff_ffff,
    -(2 ** 31),
  ]);
}

function someEntry(rng: Rng, m: Record<string, unknown>): { tree: string; list: RawEntry[]; index: number } | null {
  const trees = rawTrees(m).filter((t) => t.entries.length > 0);
  if (trees.length === 0) return null;
  // Favour the small trees (criu, volumes): the base has hundreds of entries.
  const t = rng.chance(0.5) ? rng.pick(trees) : trees[rng.below(Math.min(2, trees.length))]!;
  return { tree: t.name, list: t.entries, index: rng.below(t.entries.length) };
}

/** One change to the manifest's typed fields. */
export function mutateManifest(model: ExportModel, rng: Rng, t: FuzzTargets): string {
  const m = model.manifest;
  const strings = dictionary(t);
  const k = rng.below(100);
  if (k < 10) {
    const key = rng.pick(TOP_KEYS);
    if (rng.chance(0.15)) {
      delete m[key];
      return `manifest: drop ${key}`;
    }
    if (key === "format") m.format = rng.pick([0, 2, "1", 1.5, -1, 2 ** 32, null]);
    else if (key === "cpuFlags") m.cpuFlags = rng.chance(0.5) ? Array.from({ length: 5000 }, (_, i) => `f${i}`) : [rng.pick(strings), "x".repeat(100)];
    else if (key === "createdAt") m.createdAt = rng.pick(["", "yesterday", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"]);
    else if (key === "parent") m.parent = rng.pick(["", "0".repeat(64), "../".repeat(22), "A".repeat(64), "0".repeat(63)]);
    else m[key] = oddValue(rng, strings);
    return `manifest: ${key} = ${describe(m[key])}`;
  }
  if (k < 14) {
    // An own "__proto__" key, as a hostile msgpack map would carry it (an assignment would set the prototype).
    const key = rng.pick(["extra", "__proto__", "constructor", "signature", "trust"]);
    Object.defineProperty(m, key, { value: oddValue(rng, strings), enumerable: true, writable: true, configurable: true });
    return `manifest: unknown key ${key} added`;
  }
  if (k < 36) {
    const pod = (m.pod && typeof m.pod === "object" ? m.pod : (m.pod = {})) as Record<string, unknown>;
    const key = rng.pick(POD_KEYS);
    const c = rng.below(10);
    if (c === 0) delete pod[key];
    else if (key === "volumes") pod.volumes = podVolumes(rng, t, pod.volumes);
    else if (key === "limits") pod.limits = { memoryBytes: rng.pick([0, 1, -1, 4 << 20, 2 ** 53, null, "1g"]) };
    else if (key === "command")
      pod.command = rng.pick([[], [rng.pick(strings)], ["sh", "-c", "touch " + t.canary + "/ran"], Array.from({ length: 5000 }, () => "x")]);
    else if (key === "env") pod.env = rng.pick([{ LD_PRELOAD: `${t.canary}/x.so` }, { "": "x" }, { "A=B": "c" }, { A: "x\0y" }, []]);
    else if (key === "rootKind") pod.rootKind = rng.pick(["copy", "overlay", "host", "", null]);
    else if (c < 8) pod[key] = rng.pick(strings);
    else pod[key] = oddValue(rng, strings);
    return `pod.${key} = ${c === 0 ? "(dropped)" : describe(pod[key])}`;
  }
  if (k < 46) {
    const vols = Array.isArray(m.volumes) ? (m.volumes as Array<Record<string, unknown>>) : (m.volumes = []);
    const c = rng.below(4);
    if (c === 0 || vols.length === 0) {
      const p = rng.pick(["/data", "/", "/.", "//etc", "/etc/cron.d", "/proc", "/data/../etc", "data", "/x/", "/.autopod"]);
      vols.push({ path: p, entries: [{ path: ".", type: "dir", mode: 0o755, uid: 0, gid: 0, mtimeMs: 0, size: 0, chunkSize: 0, chunks: new Uint8Array() }] });
      return `volumes: add ${JSON.stringify(p)}`;
    }
    const v = rng.pick(vols);
    if (c === 1) {
      v.path = rng.pick(["/", "/.", "//etc", "/etc/cron.d", "/proc", "/data/../etc", "data", "/data/", "/.autopod", "/dev", rng.pick(strings)]);
      return `volumes: path = ${describe(v.path)}`;
    }
    if (c === 2) {
      vols.push(clone(v));
      return "volumes: duplicated";
    }
    v.entries = oddValue(rng, strings);
    return "volumes: entries = odd value";
  }
  const at = someEntry(rng, m);
  if (at === null) return "manifest: no entries";
  const e = at.list[at.index]!;
  // An earlier mutation may have made the tree a list of strings or numbers.
  if (typeof e !== "object" || e === null) return `${at.tree}: entry ${at.index} is not a map`;
  const where = `${at.tree} "${String(e.path).slice(0, 60)}"`;
  if (k < 52) return `${where}: ${mutateTree(at.list, at.index, rng, t, strings)}`;
  const key = rng.pick(ENTRY_KEYS);
  if (rng.chance(0.08)) {
    delete e[key];
    return `${where}: drop ${key}`;
  }
  switch (key) {
    case "path":
      e.path = rng.chance(0.3) && at.list.length > 1 ? at.list[rng.below(at.list.length)]!.path : rng.pick(strings);
      break;
    case "type":
      e.type = rng.pick(ENTRY_TYPES);
      break;
    case "target":
      e.target = rng.pick(strings);
      break;
    case "opaque":
      e.opaque = rng.pick([true, false, 1, "yes"]);
      break;
    case "chunks": {
      const list = e.chunks instanceof Uint8Array ? e.chunks : new Uint8Array();
      const c = rng.below(5);
      if (c === 0) e.chunks = list.subarray(0, Math.max(0, list.byteLength - 32));
      else if (c === 1) e.chunks = Uint8Array.from([...list, ...new Uint8Array(32)]);
      else if (c === 2) e.chunks = list.subarray(0, Math.max(0, list.byteLength - 1));
      else if (c === 3 && list.byteLength >= 32) {
        const other = [...model.chunks.keys()];
        const nl = list.slice();
        if (other.length) nl.set(Buffer.from(rng.pick(other), "hex"), 32 * rng.below(list.byteLength / 32));
        e.chunks = nl;
      } else e.chunks = rng.bytes(32 * (1 + rng.below(3)));
      break;
    }
    default:
      e[key] = rng.chance(0.7) ? intEdge(rng, e[key]) : oddValue(rng, strings);
  }
  return `${where}: ${key} = ${describe(e[key])}`;
}

function podVolumes(rng: Rng, t: FuzzTargets, cur: unknown): unknown {
  const vols = Array.isArray(cur) ? clone(cur as Array<Record<string, unknown>>) : [];
  // Host sources only ever name the canary or paths the pod does not write through (it writes /data/apfz-counter).
  const host = rng.pick([`${t.canary}`, `${t.canary}/dir`, "/", "/.", "//tmp", "/tmp/", "relative", "", `${t.canary}/../..`, `${t.canary}/missing`]);
  const pod = rng.pick(["/data", "/shared", "/", "/proc", "//etc", "/.autopod", "x"]);
  if (vols.length && rng.chance(0.6)) {
    const v = rng.pick(vols);
    if (rng.chance(0.5)) v.host = host;
    else v.pod = pod;
    if (rng.chance(0.2)) v.readonly = oddValue(rng, ["true"]);
  } else vols.push({ host, pod, readonly: rng.chance(0.5) });
  return vols;
}

/** Structural changes of one tree: add, drop, duplicate, link out, nest under a link. */
function mutateTree(list: RawEntry[], index: number, rng: Rng, t: FuzzTargets, strings: readonly string[]): string {
  const e = list[index]!;
  const base = { mode: 0o777, uid: 0, gid: 0, mtimeMs: 0, size: 0, chunkSize: 0, chunks: new Uint8Array() };
  switch (rng.below(8)) {
    case 0:
      list.splice(index, 1);
      return "dropped";
    case 1:
      list.splice(index, 0, clone(e));
      return "duplicated";
    case 2: {
      const target = rng.pick([`${t.canary}/victim`, `${t.canary}/new-file`, `${"../".repeat(12)}${t.canary.slice(1)}/victim`, "/proc/self/root", "."]);
      list[index] = { ...base, path: e.path, type: "symlink", target };
      return `replaced by a symlink to ${JSON.stringify(target)}`;
    }
    case 3: {
      const name = rng.pick(["restore.log", "stats-restore", "dump.log", "x", `${String(e.path)}/under`]);
      list.push({ ...base, path: name, type: "symlink", target: `${t.canary}/victim` });
      return `added symlink ${name} -> canary`;
    }
    case 4: {
      const name = `${String(e.path)}/child`;
      list.push({ ...base, path: name, type: "dir", mode: 0o755 });
      return `added ${name} under it`;
    }
    case 5:
      list.push({ ...base, path: `hl${rng.below(100)}`, type: "hardlink", target: rng.pick([String(e.path), `${t.canary}/victim`, "..", rng.pick(strings)]) });
      return "added a hard link";
    case 6:
      list.push({ ...base, path: `dev${rng.below(100)}`, type: rng.pick(["chardev", "blockdev", "fifo", "whiteout"]), mode: 0o6777 });
      return "added a special file";
    default: {
      const j = rng.below(list.length);
      [list[index], list[j]] = [list[j]!, list[index]!];
      return "reordered";
    }
  }
}

/** Change one CRIU image file through its protobuf fields (or its raw bytes); the chunk list follows. */
export function mutateCriu(model: ExportModel, rng: Rng, t: FuzzTargets): string {
  const criu = Array.isArray(model.manifest.criu) ? (model.manifest.criu as RawEntry[]) : [];
  const files = criu.filter((e) => e.type === "file" && typeof e.size === "number" && e.size > 0);
  if (files.length === 0) return "criu: no files";
  // Metadata images are the interesting ones; pages rarely.
  const meta = files.filter((e) => !String(e.path).startsWith("pages-"));
  const e = meta.length && rng.chance(0.9) ? rng.pick(meta) : rng.pick(files);
  const before = fileBytes(model, e);
  const n = 1 + (rng.chance(0.3) ? rng.below(3) : 0);
  let bytes = before;
  const whats: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = String(e.path).endsWith(".tar.gz.img") || String(e.path).startsWith("pages-") ? mutateRaw(bytes, rng) : mutateCriuFile(bytes, rng, dictionary(t));
    bytes = r.bytes;
    whats.push(r.what);
  }
  setFileBytes(model, e, bytes);
  return `criu ${String(e.path)}: ${whats.join("; ")}`;
}

/** Change which chunk a file lists, or what a chunk holds, keeping every hash true. */
export function mutateChunks(model: ExportModel, rng: Rng): string {
  const files = rawTrees(model.manifest)
    .flatMap((tr) => tr.entries.map((e) => ({ tree: tr.name, e })))
    .filter((x) => x.e.type === "file" && typeof x.e.size === "number" && x.e.size > 0);
  if (files.length === 0) return "chunks: no files";
  const { tree, e } = rng.pick(files);
  const where = `chunks of ${tree} "${String(e.path)}"`;
  switch (rng.below(4)) {
    case 0: {
      // Another file's contents, hashes recomputed.
      const o = rng.pick(files).e;
      setFileBytes(model, e, fileBytes(model, o));
      return `${where}: contents of "${String(o.path)}"`;
    }
    case 1: {
      e.chunkSize = rng.pick([4096, 8192, 65536, 16 << 20]);
      setFileBytes(model, e, fileBytes(model, e));
      return `${where}: rechunked at ${e.chunkSize}`;
    }
    case 2: {
      const b = fileBytes(model, e);
      setFileBytes(model, e, b.subarray(0, rng.below(b.byteLength)));
      return `${where}: truncated`;
    }
    default: {
      const b = fileBytes(model, e);
      const grown = new Uint8Array(b.byteLength + 1 + rng.below(70_000));
      grown.set(b);
      setFileBytes(model, e, grown);
      return `${where}: grown with zeros`;
    }
  }
}

/** Change the container itself: frames, counts, magic, hashes, truncation. */
export function mutateLayout(l: ExportLayout, rng: Rng): string {
  switch (rng.below(14)) {
    case 0:
      l.header = l.header.slice();
      l.header[rng.below(16)]! ^= 1 << rng.below(8);
      return "container: header bit flip";
    case 1:
      l.manifestLength = Number(rng.pick([0n, 1n, 0xffff_ffffn, 256n << 20n, (256n << 20n) + 1n])) || l.manifestBytes.byteLength - 1;
      return `container: manifest length ${l.manifestLength}`;
    case 2:
      l.manifestHash = rng.bytes(32);
      return "container: manifest hash wrong";
    case 3:
      if (l.frames.length > 1) {
        const i = rng.below(l.frames.length);
        const j = rng.below(l.frames.length);
        [l.frames[i], l.frames[j]] = [l.frames[j]!, l.frames[i]!];
      }
      return "container: frames reordered (final hash recomputed)";
    case 4:
      if (l.frames.length) l.frames.splice(rng.below(l.frames.length), 1);
      return "container: a frame dropped";
    case 5:
      if (l.frames.length) l.frames.push(clone(l.frames[rng.below(l.frames.length)]!));
      return "container: a frame repeated";
    case 6: {
      const data = rng.bytes(1 + rng.below(100));
      l.frames.push({ tag: 0x43, hash: new Uint8Array(new Bun.CryptoHasher("sha256").update(data).digest() as Uint8Array), data });
      return "container: an unreferenced frame";
    }
    case 7:
      if (l.frames.length) l.frames[rng.below(l.frames.length)]!.length = Number(rng.pick([0n, 1n, 0xffff_ffffn, (16n << 20n) + 1n]));
      return "container: a frame's length lies";
    case 8:
      if (l.frames.length) l.frames[rng.below(l.frames.length)]!.tag = rng.u32() & 0xff;
      return "container: a frame's tag";
    case 9:
      l.trailerCount = rng.pick([0n, 1n, 0xffff_ffff_ffff_ffffn]);
      l.trailerBytes = rng.chance(0.5) ? rng.pick([0n, 0xffff_ffff_ffff_ffffn]) : undefined;
      return "container: trailer counts";
    case 10:
      l.finalHash = rng.bytes(32);
      return "container: final hash wrong";
    case 11:
      l.trailing = rng.bytes(1 + rng.below(64));
      return "container: bytes after the trailer";
    case 12:
      l.cutAt = rng.below(serialize(l).byteLength);
      return `container: truncated at ${l.cutAt}`;
    default:
      if (l.frames.length) {
        const f = l.frames[rng.below(l.frames.length)]!;
        f.data = f.data.slice();
        if (f.data.byteLength) f.data[rng.below(f.data.byteLength)]! ^= 1 << rng.below(8);
      }
      return "container: a chunk's byte flipped";
  }
}

/** A new input from a seed: one to three mutations, at the layers chosen. */
export function mutant(seed: ExportModel, rng: Rng, t: FuzzTargets): Mutant {
  const model: ExportModel = { manifest: clone(seed.manifest), chunks: new Map(seed.chunks) };
  const n = rng.chance(0.7) ? 1 : 2 + rng.below(2);
  const layers: Layer[] = [];
  const ops: string[] = [];
  let container = false;
  for (let i = 0; i < n; i++) {
    const r = rng.below(100);
    const layer: Layer = r < 8 ? "container" : r < 45 ? "manifest" : r < 55 ? "chunks" : "criu";
    if (!layers.includes(layer)) layers.push(layer);
    if (layer === "container") container = true;
    else if (layer === "manifest") ops.push(mutateManifest(model, rng, t));
    else if (layer === "chunks") ops.push(mutateChunks(model, rng));
    else ops.push(mutateCriu(model, rng, t));
  }
  const l = layoutOf(model);
  if (container) ops.push(mutateLayout(l, rng));
  return { bytes: serialize(l), layers, ops };
}

function describe(v: unknown): string {
  if (v instanceof Uint8Array) return `<${v.byteLength} bytes>`;
  if (typeof v === "bigint") return `${v}n`;
  const s = JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? `<${x.byteLength} bytes>` : x));
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 80)}...` : s;
}
