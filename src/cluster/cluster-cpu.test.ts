import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterCpu } from "./cluster-cpu.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function file(): string {
  const d = mkdtempSync(join(tmpdir(), "autopod-cpu-"));
  dirs.push(d);
  return join(d, "peer-cpus.json");
}

const HOST = ["avx", "avx2", "fma", "fpu", "sha_ni", "sse4_2"];

test("the baseline is what this host and every peer seen have; a peer never seen is named and left out", () => {
  let peers = ["b", "c"];
  const cpu = new ClusterCpu(file(), HOST, () => peers, true);
  expect(cpu.baseline()).toEqual(HOST);
  expect(cpu.unknownPeers()).toEqual(["b", "c"]);
  cpu.record("b", ["fpu", "sse4_2", "avx"]);
  expect(cpu.baseline()).toEqual(["avx", "fpu", "sse4_2"]);
  // sha_ni: glibc cannot hide it, so a pod may use it, and b cannot restore its images.
  expect(cpu.planForPod(true)).toEqual({ hidden: ["AVX2", "FMA"], features: ["avx", "fpu", "sha_ni", "sse4_2"] });
  expect(cpu.planForPod(false)).toEqual({ hidden: [], features: HOST });
  const v = cpu.view();
  expect(v.members).toEqual([
    { name: "b", seenAt: expect.any(String), lacks: ["avx2", "fma"], unhideable: ["sha_ni"] },
    { name: "c", seenAt: null, lacks: [], unhideable: [] },
  ]);
  expect(v.hidden).toEqual(["AVX2", "FMA"]);
  // A peer removed leaves the baseline.
  peers = ["c"];
  expect(cpu.baseline()).toEqual(HOST);
});

test("the peers' flags outlive the agent; an unreadable cache is only a warning", () => {
  const f = file();
  new ClusterCpu(f, HOST, () => ["b"], true).record("b", ["fpu"]);
  expect(new ClusterCpu(f, HOST, () => ["b"], true).baseline()).toEqual(["fpu"]);
  writeFileSync(f, "{not json");
  const warnings: string[] = [];
  const cpu = new ClusterCpu(
    f,
    HOST,
    () => ["b"],
    true,
    (m) => warnings.push(m),
  );
  expect(warnings).toEqual(["ignored an unreadable cache of the peers' CPU flags"]);
  expect(cpu.unknownPeers()).toEqual(["b"]);
  cpu.record("b", ["fpu", "avx"]);
  expect(JSON.parse(readFileSync(f, "utf8")).peers.b.flags).toEqual(["avx", "fpu"]);
});

test("config off: every pod may use the host's flags, and hides nothing", () => {
  const cpu = new ClusterCpu(file(), HOST, () => ["b"], false);
  cpu.record("b", ["fpu"]);
  expect(cpu.planForPod(true)).toEqual({ hidden: [], features: HOST });
  expect(cpu.view()).toMatchObject({ isBaselineOn: false, baseline: ["fpu"], hidden: [] });
});

test("flags the test-only mask takes away are hidden from every pod started here, baseline or not, and not shown as the cluster's", () => {
  const cpu = new ClusterCpu(
    file(),
    HOST,
    () => [],
    true,
    () => {},
    ["avx512f", "xsavec", "sha_ni"],
  );
  // sha_ni: glibc cannot hide it; the others by glibc's names.
  expect(cpu.planForPod(true)).toEqual({ hidden: ["AVX512F", "XSAVEC"], features: HOST });
  expect(cpu.planForPod(false)).toEqual({ hidden: ["AVX512F", "XSAVEC"], features: HOST });
  expect(cpu.view().hidden).toEqual([]);
});
