/**
 * The peers this host knows, as seen over the peer API: reachability,
 * round-trip time and what each says of itself. Talking to a peer is also how
 * revocations spread: a newer revocation list, signed by the CA, is taken
 * from whichever peer has it, and ours is offered to a peer that lacks it.
 */
import { PeerClient } from "./client.ts";
import type { PeerInfo, PeerPods } from "./schemas.ts";
import { errorMessage, NotFoundError, PreconditionError, UnavailableError } from "../../errors.ts";
import type { PageBridge } from "../../migrate/page-link.ts";
import type { PageLinkExpect } from "../../migrate/peer.ts";
import { listenPageLink, type PageLinkServer } from "./page-link-tls.ts";
import type { Logger } from "../../log.ts";
import type { Cluster, PeerEntry } from "../../cluster/cluster.ts";

export interface PeerStatus extends PeerEntry {
  reachable: boolean;
  rttMs: number | null;
  info: PeerInfo | null;
  error: string | null;
}

export class PeerDirectory {
  constructor(
    readonly cluster: Cluster,
    readonly log: Logger,
    /** Called with each info a peer answers (the CPU baseline keeps its flags). */
    readonly onInfo: (peer: string, info: PeerInfo) => void = () => {},
    /** Where a post-copy page link listens: the peer API's own address. */
    readonly pageLinkHost = "0.0.0.0",
  ) {}

  listenPageLink(expect: PageLinkExpect, bridge: PageBridge, onRefused: (why: string) => void): PageLinkServer {
    const id = this.cluster.identity;
    if (!id) throw new PreconditionError("This host is not in a cluster");
    return listenPageLink(id, (serial) => this.cluster.isRevoked(serial), this.pageLinkHost, expect, bridge, onRefused);
  }

  client(name: string): PeerClient {
    const p = this.cluster.peers().find((x) => x.name === name);
    if (!p) throw new NotFoundError(`No peer named "${name}" (add it with \`autopod peer add ${name} https://ADDRESS:7443\`)`);
    return new PeerClient(this.cluster, p.name, p.url);
  }

  /** Ask every peer for its info, at once. */
  async statuses(): Promise<PeerStatus[]> {
    return Promise.all(this.cluster.peers().map((p) => this.status(p)));
  }

  async status(p: PeerEntry): Promise<PeerStatus> {
    const client = new PeerClient(this.cluster, p.name, p.url);
    const t0 = performance.now();
    try {
      const info = await client.info();
      const rttMs = Math.round((performance.now() - t0) * 10) / 10;
      this.onInfo(p.name, info);
      await this.#syncRevocations(client, info);
      return { ...p, reachable: true, rttMs, info, error: null };
    } catch (e) {
      return { ...p, reachable: false, rttMs: null, info: null, error: errorMessage(e) };
    }
  }

  /**
   * Every peer's pods and addresses, at once (routed pod network). A peer
   * that cannot be asked makes this fail: its pods' addresses are unknown;
   * unless `mayBeUnreachable` allows it, then it is listed with no pods and why.
   */
  async clusterPods(mayBeUnreachable?: (host: string) => boolean): Promise<Array<{ host: string; pods: PeerPods["pods"]; unreachable?: string }>> {
    return Promise.all(
      this.cluster.peers().map(async (p) => {
        try {
          return { host: p.name, pods: (await new PeerClient(this.cluster, p.name, p.url).pods()).pods };
        } catch (e) {
          if (mayBeUnreachable?.(p.name)) return { host: p.name, pods: [], unreachable: errorMessage(e) };
          throw new UnavailableError(
            `Cannot make sure the pod address is free in the cluster: ${errorMessage(e)} (remove a host that is gone for good with \`autopod peer rm ${p.name}\`)`,
            { cause: e },
          );
        }
      }),
    );
  }

  /** Send our revocation list to every peer; returns who took it and who could not be reached. */
  async pushRevocations(): Promise<Array<{ peer: string; adopted: boolean; error: string | null }>> {
    const id = this.cluster.identity;
    if (!id) return [];
    return Promise.all(
      this.cluster.peers().map(async (p) => {
        try {
          return { peer: p.name, adopted: await new PeerClient(this.cluster, p.name, p.url).sendRevocationList(id.crlPem), error: null };
        } catch (e) {
          return { peer: p.name, adopted: false, error: errorMessage(e) };
        }
      }),
    );
  }

  async #syncRevocations(client: PeerClient, info: PeerInfo): Promise<void> {
    const id = this.cluster.identity;
    if (!id) return;
    const theirs = Date.parse(info.revocationListTime);
    if (theirs > id.crlTime.getTime()) {
      try {
        if (await this.cluster.adoptCrl(await client.revocationList())) this.log.info("took a newer revocation list", { from: client.name });
      } catch (e) {
        this.log.warn("a peer's revocation list was refused", { from: client.name, error: errorMessage(e) });
      }
    } else if (theirs < id.crlTime.getTime()) {
      await client.sendRevocationList(id.crlPem).catch(() => false);
    }
  }
}
