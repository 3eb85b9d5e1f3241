/**
 * A Checkpointer over fakes of the OS for this folder's unit tests: a real
 * pod runtime, chunk store and catalogue in a temporary state directory, a
 * FakeHost for the pods and a FakeCheckpointHost for CRIU, locks and signals.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../log.ts";
import { FakeHost } from "../pods/fake-host.ts";
import { PodRuntime, type PodRuntimeOptions } from "../pods/runtime.ts";
import { PodStore } from "../pods/store.ts";
import { ChunkStore } from "../store/chunk-store.ts";
import { ImageCatalogue } from "../store/image-catalogue.ts";
import { FakeCheckpointHost, makeFakeBase } from "./_fake-checkpoint-host.ts";
import { Checkpointer } from "./checkpointer.ts";
import { writableLayerOf } from "./placement.ts";
import { Ed25519Signer, HostTrustStore, ImageTrust } from "../trust/index.ts";

/** One host key for every fixture: images a fixture's checkpointer makes are its own. */
const signer = (await Ed25519Signer.generate()).signer;

export interface Fixture {
  dir: string;
  state: string;
  base: string;
  podHost: FakeHost;
  host: FakeCheckpointHost;
  podStore: PodStore;
  pods: PodRuntime;
  store: ChunkStore;
  catalogue: ImageCatalogue;
  cp: Checkpointer;
  /** A new agent over the same state and the same (fake) OS: what survives an agent's death. */
  restart(): void;
  close(): void;
}

const quiet = createLogger({ level: "error", write: () => {} });

export function makeFixture(opts: { cpuPlan?: PodRuntimeOptions["cpuPlan"] } = {}): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "autopod-checkpointer-"));
  const state = join(dir, "state");
  mkdirSync(state);
  const podHost = new FakeHost();
  const host = new FakeCheckpointHost(podHost);
  const base = makeFakeBase(podHost, join(dir, "base"));
  const open = () => {
    const podStore = new PodStore(join(state, "autopod.db"));
    const pods = new PodRuntime({
      stateDir: state,
      agentKey: "k1",
      bridge: "br0",
      subnet: "10.213.7.0/29",
      layer: "overlay",
      store: podStore,
      host: podHost,
      log: quiet,
      ...(opts.cpuPlan ? { cpuPlan: opts.cpuPlan } : {}),
    });
    const store = ChunkStore.open(join(state, "store"), { isDurable: false });
    const catalogue = new ImageCatalogue(store);
    const trust = new ImageTrust(store.db, signer, new HostTrustStore(signer.publicKey));
    const cp = new Checkpointer({ stateDir: state, pods, store, catalogue, criu: "", log: quiet, host, trust });
    return { podStore, pods, store, catalogue, cp };
  };
  const f: Fixture = {
    dir,
    state,
    base,
    podHost,
    host,
    ...open(),
    restart() {
      f.store.close();
      f.podStore.close();
      Object.assign(f, open());
    },
    close() {
      f.store.close();
      f.podStore.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return f;
}

/** A running pod with a file in its writable layer (the fake host makes no directories). */
export async function runningPod(f: Fixture, name = "web", extra: Record<string, unknown> = {}): Promise<number> {
  const v = await f.pods.create({ name, rootfs: f.base, cmd: ["sleep", "1000"], ...extra } as never);
  const layer = writableLayerOf(f.pods.record(name).runtime);
  mkdirSync(layer, { recursive: true });
  writeFileSync(join(layer, "data.txt"), `data of ${name}\n`);
  return v.pid!;
}

/** What checkpoint or restore may leave behind in the state directory: temporary directories and journals. */
export function leftovers(f: Fixture): string[] {
  return [...readdirSync(join(f.state, "tmp")).map((t) => `tmp/${t}`), ...readdirSync(join(f.state, "journal")).map((j) => `journal/${j}`)];
}
