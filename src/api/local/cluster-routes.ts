/** Local API routes of the cluster: membership, host bundles, revocation, peers. */
import type { Hono } from "hono";
import { z } from "zod";
import { MAX_BUNDLE_BYTES } from "../../cluster/bundle.ts";
import type { Cluster } from "../../cluster/cluster.ts";
import type { ClusterCpu } from "../../cluster/cluster-cpu.ts";
import type { PeerDirectory } from "../peer/peer-directory.ts";
import type { ImageCatalogue } from "../../store/image-catalogue.ts";
import type { ImageTrust } from "../../trust/image-trust.ts";
import { pullImage, pushImage } from "../../transfer/push.ts";
import { readJsonBody } from "./bounded-body.ts";
import { progressResponse, wantsProgress } from "./progress-stream.ts";

const Name = z.string().max(63);
const Addresses = z.array(z.string().max(253)).max(32).default([]);
const InitBody = z.object({ cluster: Name, host: Name, addresses: Addresses }).strict();
const AddHostBody = z.object({ name: Name, addresses: Addresses }).strict();
const JoinBody = z.object({ bundle: z.string().max(MAX_BUNDLE_BYTES) }).strict();
const PushBody = z.object({ peer: Name }).strict();
const PullBody = z.object({ peer: Name, image: z.string().regex(/^[0-9a-f]{64}$/, "a full image id (64 hex digits)") }).strict();
const AddPeerBody = z.object({ name: Name, url: z.string().max(300) }).strict();

const MAX_BODY = MAX_BUNDLE_BYTES + 4096;

function json<T extends z.ZodType>(req: Request, schema: T): Promise<z.infer<T>> {
  return readJsonBody(req, schema, MAX_BODY);
}

export interface ClusterRouteDeps {
  cluster: Cluster;
  peers: PeerDirectory;
  /** The peers' CPUs and the baseline new pods start with. */
  cpu: ClusterCpu;
  catalogue: ImageCatalogue;
  trust: ImageTrust;
  /** An image id or unique prefix to the full id. */
  resolveImage(ref: string): string;
  /** Where this host's peer API listens, when it does. */
  listening(): string | null;
}

export function addClusterRoutes(app: Hono, { cluster, peers, cpu, listening, catalogue, trust, resolveImage }: ClusterRouteDeps): void {
  // With ?progress=true the answer is a progress stream (progress-stream.ts) ending in the report.
  app.post("/v1/images/:id/push", async (c) => {
    const b = await json(c.req.raw, PushBody);
    const id = resolveImage(c.req.param("id"));
    const peer = peers.client(b.peer);
    if (wantsProgress(c.req.query("progress"))) return progressResponse((on) => pushImage(catalogue, trust, peer, id, on));
    return c.json({ push: await pushImage(catalogue, trust, peer, id) });
  });

  app.post("/v1/images/pull", async (c) => {
    const b = await json(c.req.raw, PullBody);
    const peer = peers.client(b.peer);
    if (wantsProgress(c.req.query("progress"))) return progressResponse((on) => pullImage(catalogue, trust, peer, b.image, on));
    return c.json({ pull: await pullImage(catalogue, trust, peer, b.image) });
  });

  app.get("/v1/cluster", (c) => c.json({ ...cluster.view(), listening: listening() }));

  app.post("/v1/cluster/init", async (c) => {
    const b = await json(c.req.raw, InitBody);
    return c.json({ ...(await cluster.init(b.cluster, b.host, b.addresses)), listening: listening() }, 201);
  });

  app.post("/v1/cluster/hosts", async (c) => {
    const b = await json(c.req.raw, AddHostBody);
    return c.json({ bundle: await cluster.addHost(b.name, b.addresses) }, 201);
  });

  app.delete("/v1/cluster/hosts/:name", async (c) => {
    await cluster.removeHost(c.req.param("name"));
    return c.json({ removed: c.req.param("name"), peers: await peers.pushRevocations() });
  });

  app.post("/v1/cluster/join", async (c) => {
    const b = await json(c.req.raw, JoinBody);
    return c.json({ ...(await cluster.join(b.bundle)), listening: listening() }, 201);
  });

  // Asked first: the baseline then holds what the peers just said.
  app.get("/v1/peers", async (c) => {
    const statuses = await peers.statuses();
    return c.json({ peers: statuses, cpu: cpu.view() });
  });

  app.post("/v1/peers", async (c) => {
    const b = await json(c.req.raw, AddPeerBody);
    const p = cluster.addPeer(b.name, b.url);
    return c.json(await peers.status(p), 201);
  });

  app.delete("/v1/peers/:name", (c) => {
    cluster.removePeer(c.req.param("name"));
    return c.json({ removed: c.req.param("name") });
  });
}
