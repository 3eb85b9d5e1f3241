/** Helpers shared by this folder's tests. */
import fs from "node:fs";
import path from "node:path";
import { FORMAT_VERSION, type Manifest } from "./manifest.ts";

export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

/** A description of a tree to compare two trees: type, mode, owner, mtime, size, content hash, link target. */
export function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (abs: string, rel: string) => {
    const st = fs.lstatSync(abs);
    let what: string;
    if (st.isSymbolicLink()) what = `link ${fs.readlinkSync(abs)} ${st.uid}:${st.gid}`;
    else if (st.isDirectory()) what = `dir`;
    else what = `file ${st.size} ${Bun.hash(fs.readFileSync(abs)).toString(16)} nlink=${st.nlink}`;
    const mtime = st.isSymbolicLink() ? "" : ` mtime=${Math.round(st.mtimeMs)}`;
    out[rel] = `${what} mode=${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${mtime}`;
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n), rel === "." ? n : `${rel}/${n}`);
  };
  walk(root, ".");
  return out;
}

export function sampleManifest(over: Partial<Manifest> = {}): Manifest {
  return {
    format: FORMAT_VERSION,
    autopodVersion: "0.1.0",
    criuVersion: "4.2.1",
    kernelRelease: "6.18.0",
    cpuFlags: ["fpu", "sse2"],
    createdAt: "2025-01-02T03:04:05.000Z",
    parent: null,
    pod: { name: "web", command: ["/bin/sh"], env: { A: "1" }, ip: "10.213.0.5/24", hostname: "web" },
    criu: [],
    rootfs: [],
    volumes: [],
    ...over,
  };
}
