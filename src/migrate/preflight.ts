/**
 * Can the peer take the pod? Asked before anything moves, from what the peer
 * says of itself (its info and pod list): a CRIU at least as new as ours, the
 * CPU features our processes may use, memory and disk for the pod, and the
 * pod's name and address free there.
 */
import { whyHostCannotRestore } from "../checkpoint/host-compat.ts";
import { formatBytes } from "../format.ts";
import type { PeerFacts, PeerPodList } from "./peer.ts";

export interface PodNeeds {
  name: string;
  address: string;
  /** Bytes of memory the pod uses now (its image holds about as much). */
  memoryBytes: number;
  /** Bytes the image needs on the peer's disk (memory plus writable layer and volumes). */
  diskBytes: number;
  criuVersion: string;
  cpuFlags: readonly string[];
}

/** Room kept free on the peer beyond the pod's own needs. */
export const HEADROOM_BYTES = 128 << 20;

/** Why the peer cannot take the pod, or null. */
export function preflightRefusal(pod: PodNeeds, info: PeerFacts, peerPods: PeerPodList): string | null {
  if (info.criu === null) return `host "${info.host}" has no working CRIU`;
  const why = whyHostCannotRestore({ criuVersion: pod.criuVersion, cpuFlags: [...pod.cpuFlags] }, info.criu, info.cpuFlags);
  if (why) return `host "${info.host}": ${why}`;
  if (info.memory.availableBytes < pod.memoryBytes + HEADROOM_BYTES) {
    return `host "${info.host}" has ${formatBytes(info.memory.availableBytes)} of memory available; the pod needs about ${formatBytes(pod.memoryBytes + HEADROOM_BYTES)}`;
  }
  if (info.disk.freeBytes < pod.diskBytes + HEADROOM_BYTES) {
    return `host "${info.host}" has ${formatBytes(info.disk.freeBytes)} free on disk; the pod's image needs about ${formatBytes(pod.diskBytes + HEADROOM_BYTES)}`;
  }
  const ip = pod.address.split("/")[0];
  for (const p of peerPods.pods) {
    if (p.name === pod.name) return `host "${info.host}" already has a pod named "${pod.name}"`;
    if (p.address.split("/")[0] === ip) return `address ${ip} is taken on host "${info.host}" by its pod "${p.name}"`;
  }
  return null;
}
