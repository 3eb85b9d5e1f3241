/**
 * compareDebianVersions against `dpkg --compare-versions` as the oracle, on
 * real versions from this machine's dpkg database and apt lists, and on
 * generated versions with epochs, tildes and revisions.
 */
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import { compareDebianVersions } from "../src/status/debian-version.ts";
import { parseDpkgStatus } from "../src/status/dpkg-status.ts";

const dpkg = which("dpkg");
const LISTS = "/var/lib/apt/lists";

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every "Package"/"Version" of the apt lists, decompressed by apt's own helper. */
async function listVersions(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  let names: string[] = [];
  try {
    names = readdirSync(LISTS).filter((n) => /_Packages(\.\w+)?$/.test(n));
  } catch {
    return out;
  }
  for (const n of names) {
    const r = await run(["/usr/lib/apt/apt-helper", "cat-file", join(LISTS, n)], { timeoutMs: 60_000 });
    if (r.exitCode !== 0) continue;
    let pkg = "";
    for (const line of r.stdout.split("\n")) {
      if (line.startsWith("Package: ")) pkg = line.slice(9);
      else if (line.startsWith("Version: ")) {
        const list = out.get(pkg) ?? [];
        list.push(line.slice(9));
        out.set(pkg, list);
      }
    }
  }
  return out;
}

function generatedVersions(rand: () => number, n: number): string[] {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const upstreams = [
    "0",
    "1",
    "1.0",
    "1.00",
    "1.0.1",
    "1.01",
    "1.10",
    "2",
    "10",
    "1a",
    "1.0a",
    "1.0A",
    "1.0+",
    "1.0.",
    "1.0+dfsg",
    "1.0~rc1",
    "1.0~rc2",
    "1.0~",
    "1.0~~",
    "1.0~~a",
    "1.0~beta",
    "1.0+git20240101",
    "1.0+b1",
    "1:1.0",
    "2:0.9",
    "0:1.0",
    "1.0-1",
    "1.0-1-1",
    "9.9.9",
    "20240101",
    "1.2.3.4.5",
    "1.0z",
    "1.0.0~0",
  ];
  const revisions = ["", "", "-1", "-0", "-1.1", "-1ubuntu1", "-1~bpo12+1", "-1+deb12u1", "-1+deb12u10", "-2", "-1~", "-0.1", "-1build1", "-10"];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let v = pick(upstreams);
    if (rand() < 0.3) v = `${pick(["0", "1", "2", "10"])}:${v.replace(/^\d+:/, "")}`;
    if (!/-[^-]*$/.test(v) || rand() < 0.5) v += pick(revisions);
    if (/-$/.test(v) || v.startsWith("-")) continue;
    out.push(v);
  }
  return out;
}

/** dpkg's answer, -1, 0 or 1: "lt" first, "eq" only when needed. */
async function dpkgCompare(a: string, b: string): Promise<number> {
  const lt = await run([dpkg!, "--compare-versions", a, "lt", b]);
  if (lt.exitCode === 0) return -1;
  const eq = await run([dpkg!, "--compare-versions", a, "eq", b]);
  return eq.exitCode === 0 ? 0 : 1;
}

if (!dpkg) {
  console.warn('SKIP "Debian version comparison agrees with dpkg": dpkg is not installed on this machine');
  test.skip("Debian version comparison agrees with dpkg", () => {});
} else {
  test("Debian version comparison agrees with `dpkg --compare-versions` on >= 1000 pairs, real and generated", async () => {
    const rand = prng(20261126);
    const pairs: Array<[string, string]> = [];
    const installed = parseDpkgStatus(
      await Bun.file("/var/lib/dpkg/status")
        .text()
        .catch(() => ""),
    ).map((p) => p.version);
    const lists = await listVersions();
    // 1. A package's versions against each other: installed vs candidates, as the apt check compares them.
    const byPackage = [...lists.values()].filter((vs) => new Set(vs).size > 1);
    for (let i = 0; i < 600 && byPackage.length; i++) {
      const vs = [...new Set(byPackage[Math.floor(rand() * byPackage.length)]!)];
      pairs.push([vs[0]!, vs[1]!]);
    }
    // 2. Real versions of different packages, with epochs and tildes over-sampled.
    const real = [...new Set([...installed, ...[...lists.values()].flat()])];
    const interesting = real.filter((v) => v.includes(":") || v.includes("~"));
    const any = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
    for (let i = 0; i < 600 && real.length; i++) pairs.push([any(real), any(rand() < 0.5 && interesting.length ? interesting : real)]);
    // 3. Generated versions built from the tricky pieces.
    const gen = generatedVersions(rand, 1600);
    for (let i = 0; i + 1 < gen.length; i += 2) pairs.push([gen[i]!, gen[i + 1]!]);
    // 4. Every version against itself with a tilde, a plus and an epoch.
    for (let i = 0; i < 100 && real.length; i++) {
      const v = real[Math.floor(rand() * real.length)]!;
      pairs.push([v, `${v}~1`], [v, `${v}+1`], [v, /^\d+:/.test(v) ? v : `1:${v}`]);
    }
    expect(pairs.length).toBeGreaterThanOrEqual(1000);
    expect(real.length).toBeGreaterThan(100); // the real versions were found

    const mismatches: string[] = [];
    const BATCH = 64;
    for (let i = 0; i < pairs.length; i += BATCH) {
      const batch = pairs.slice(i, i + BATCH);
      const oracle = await Promise.all(batch.map(([a, b]) => dpkgCompare(a, b)));
      batch.forEach(([a, b], j) => {
        const ours = Math.sign(compareDebianVersions(a, b)) || 0;
        if (ours !== oracle[j]) mismatches.push(`${a} vs ${b}: dpkg ${oracle[j]}, ours ${ours}`);
      });
    }
    console.log(`compared ${pairs.length} pairs with dpkg (${real.length} real versions, ${lists.size} packages in the lists)`);
    expect(mismatches).toEqual([]);
  }, 120_000);
}
