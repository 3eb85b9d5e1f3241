/** The pod spec as an image's manifest records it, from a pod's record. */
import type { PodRecord, PodSpec as RuntimePodSpec } from "../pods/pod.ts";
import type { Manifest } from "../image/manifest.ts";

/** The pod spec as the manifest records it. */
export interface ManifestPodSpec {
  name: string;
  /** The pod instance the image was made of (PodRecord.id); absent in images made before it was recorded. */
  podId?: string;
  command: string[];
  env?: Record<string, string>;
  ip: string;
  hostname?: string;
  /** cpus and pidsMax are absent in images made before they were recorded. */
  limits?: { memoryBytes: number | null; cpus?: number | null; pidsMax?: number | null };
  volumes?: Array<{ host: string; pod: string; readonly: boolean }>;
  rootfs?: string;
  rootKind?: "overlay" | "copy";
  workdir?: string;
}

export function podSpecForManifest(r: PodRecord): Manifest["pod"] {
  const s: RuntimePodSpec = r.spec;
  const spec: ManifestPodSpec = {
    name: s.name,
    podId: r.id,
    command: s.cmd,
    env: s.env,
    ip: s.address,
    hostname: s.hostname,
    limits: { memoryBytes: s.memoryBytes, cpus: s.cpus ?? null, pidsMax: s.pidsMax ?? null },
    volumes: s.volumes,
    rootfs: s.rootfs,
    rootKind: r.runtime.rootKind,
    workdir: s.workdir,
  };
  return spec as unknown as Manifest["pod"];
}
