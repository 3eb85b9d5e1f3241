/** Helpers for tests of code that handles images (this folder's, the store's and the checkpoint's): random bytes, a sample manifest. */
import { FORMAT_VERSION, type Manifest } from "./manifest.ts";

export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
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
