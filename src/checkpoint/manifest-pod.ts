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
  /** glibc's names of the CPU features the pod started without (the manifest's cpuFlags are those it may use). */
  cpuHidden?: string[];
  /** The user the command was started as (`run --user`); absent: root. */
  user?: { uid: number; gid: number | null };
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
    ...(s.cpu ? { cpuHidden: s.cpu.hidden } : {}),
    ...(s.user ? { user: s.user } : {}),
  };
  return spec as unknown as Manifest["pod"];
}

/** The CPU features a restored pod may use: those its image records, with the hidden names kept when well-formed. */
export function podCpuOf(m: Pick<Manifest, "cpuFlags" | "pod">): { features: string[]; hidden: string[] } {
  const h: unknown = (m.pod as ManifestPodSpec).cpuHidden;
  const hidden = Array.isArray(h) && h.length <= 64 && h.every((x) => typeof x === "string" && /^[A-Z0-9_]{1,32}$/.test(x)) ? (h as string[]) : [];
  return { features: [...m.cpuFlags], hidden };
}
