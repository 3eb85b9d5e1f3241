/**
 * The CPU flags of this host and of every peer, as last seen, and the
 * cluster's baseline made of them. Peers' flags come from their `info`
 * (each time a peer is asked: `peers`, `peer add`, the agent's periodic
 * sync) and are kept in a file, so starting a pod never waits on a peer,
 * and an agent restarted while a peer is down still knows its CPU.
 *
 * A peer that cannot be reached counts with the flags it last reported (a
 * host's CPU rarely changes; `peer rm` takes a host that is gone for good out
 * of the baseline). A peer never reached has no known flags: it is left out
 * of the baseline, and `peers` names it.
 */
import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { readIfExists, writeFileAtomic } from "./_files.ts";
import { type CpuPlan, commonFlags, GLIBC_HWCAPS, planFor, RELEVANT_CPU_FLAGS } from "./cpu-baseline.ts";

const CacheFile = z
  .object({
    version: z.literal(1),
    peers: z.record(z.string().max(63), z.object({ flags: z.array(z.string().max(64)).max(1024), seenAt: z.string().max(64) }).strict()),
  })
  .strict();

/** What `peers` shows of the cluster's CPUs. */
export interface ClusterCpuView {
  /** New pods start with the baseline (config `cpu.baseline`; `run --cpu-baseline=off` opts one pod out). */
  isBaselineOn: boolean;
  /** This host's flags (less `cpu.flags_mask`). */
  hostFlags: string[];
  /** Flags every host whose CPU is known has. */
  baseline: string[];
  /** glibc's names of the features this host has and the baseline lacks: what pods started here turn off. */
  hidden: string[];
  members: Array<{
    name: string;
    /** When its flags were last learned; null when never. */
    seenAt: string | null;
    /** Features glibc chooses by that this host has and that member lacks: pods started here leave them out. */
    lacks: string[];
    /** Instruction sets this host has and that member lacks, which glibc cannot hide (programs find them with cpuid): images of pods started here need them, so do not restore there. */
    unhideable: string[];
  }>;
}

export class ClusterCpu {
  #peers: z.infer<typeof CacheFile>["peers"];

  constructor(
    readonly file: string,
    readonly hostFlags: readonly string[],
    readonly peerNames: () => string[],
    readonly isBaselineOn: boolean,
    readonly warn: (message: string, fields: Record<string, string>) => void = () => {},
    /**
     * Flags this CPU has that the test-only `cpu.flags_mask` takes away: the agent acts as if it lacked them,
     * so every pod it starts hides those glibc can hide, as on a CPU that lacks them (else glibc picks them
     * by cpuid, and an image that says it does not need them does).
     */
    readonly masked: readonly string[] = [],
  ) {
    this.#peers = {};
    try {
      const text = readIfExists(file);
      if (text !== null) this.#peers = CacheFile.parse(JSON.parse(text)).peers;
    } catch (e) {
      // Only a cache: the next answer of each peer fills it again.
      warn("ignored an unreadable cache of the peers' CPU flags", { file, error: errorMessage(e) });
    }
  }

  /** Keep what a peer said of its CPU. */
  record(peer: string, flags: readonly string[]): void {
    const sorted = [...flags].sort();
    const before = this.#peers[peer];
    const now = new Date();
    // Kept (and written) when the flags change, or when the last is an hour old: seenAt is right to the hour.
    const isSame = before !== undefined && before.flags.join(" ") === sorted.join(" ") && now.getTime() - Date.parse(before.seenAt) < 3_600_000;
    if (isSame) return;
    this.#peers = { ...this.#peers, [peer]: { flags: sorted, seenAt: now.toISOString() } };
    this.#save();
  }

  /** The baseline: flags common to this host and every peer whose flags are known. */
  baseline(): string[] {
    const known = this.peerNames().flatMap((n) => (this.#peers[n] ? [this.#peers[n].flags] : []));
    return commonFlags([this.hostFlags, ...known]);
  }

  /** Peers whose flags were never learned: they are not in the baseline. */
  unknownPeers(): string[] {
    return this.peerNames().filter((n) => !this.#peers[n]);
  }

  /** What a new pod on this host hides and may use: the baseline's, or (opted out) the host's own. */
  planForPod(useBaseline: boolean): CpuPlan {
    const plan = this.#clusterPlan(useBaseline);
    const masked = this.masked.flatMap((f) => (GLIBC_HWCAPS[f] !== undefined ? [GLIBC_HWCAPS[f]] : []));
    if (masked.length === 0) return plan;
    return { hidden: [...new Set([...plan.hidden, ...masked])].sort(), features: plan.features };
  }

  #clusterPlan(useBaseline: boolean): CpuPlan {
    if (!useBaseline || !this.isBaselineOn) return { hidden: [], features: [...this.hostFlags] };
    return planFor(this.hostFlags, this.baseline());
  }

  view(): ClusterCpuView {
    const host = new Set(this.hostFlags);
    return {
      isBaselineOn: this.isBaselineOn,
      hostFlags: [...this.hostFlags],
      baseline: this.baseline(),
      hidden: this.#clusterPlan(true).hidden,
      members: this.peerNames().map((name) => {
        const p = this.#peers[name];
        const theirs = new Set(p?.flags ?? []);
        return {
          name,
          seenAt: p?.seenAt ?? null,
          lacks: p
            ? Object.keys(GLIBC_HWCAPS)
                .filter((f) => host.has(f) && !theirs.has(f))
                .sort()
            : [],
          unhideable: p ? [...RELEVANT_CPU_FLAGS].filter((f) => host.has(f) && !theirs.has(f) && GLIBC_HWCAPS[f] === undefined).sort() : [],
        };
      }),
    };
  }

  #save(): void {
    const names = new Set(this.peerNames());
    const peers = Object.fromEntries(Object.entries(this.#peers).filter(([n]) => names.has(n)));
    try {
      writeFileAtomic(this.file, JSON.stringify({ version: 1, peers }, null, 2));
    } catch (e) {
      this.warn("cannot save the peers' CPU flags", { file: this.file, error: errorMessage(e) });
    }
  }
}
