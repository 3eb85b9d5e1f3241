/** What a migration needs of the peer on the other side (src/api/peer/client.ts's PeerClient). */
import type { PageBridge } from "./page-link.ts";
import type { PeerImageClient } from "../transfer/push.ts";

/** Who must be at the other end of a post-copy page link. */
export interface PageLinkExpect {
  /** The host at the other end (its certificate must name it). */
  peer: string;
  id: string;
  secret: string;
}

/** What the source says became of a migration: the destination resumes only on "committed". */
export type MigrationOutcome = "committed" | "aborted" | "pending";

/** The source's answer about a migration: its outcome, and (when it knows the migration) which pod goes to which host. */
export interface MigrationClaim {
  outcome: MigrationOutcome;
  pod: string | null;
  to: string | null;
}

export interface HeldRestore {
  /** CRIU's restore, in milliseconds. */
  criuMs: number;
  /**
   * Where the destination's time went, in order (check, images, layer, baseAndVolumes, prepare, criu, verify, ...).
   * Post-copy: the spans after "unlock" passed with the copy running (runningBeforeAnswerMs).
   */
  phases: Record<string, number>;
}

/** Post-copy: how long the destination's copy had run when its restore answered (its phases after "unlock"; 0 from a destination that does not say). */
export function runningBeforeAnswerMs(phases: Record<string, number>): number {
  const names = Object.keys(phases);
  const at = names.indexOf("unlock");
  if (at < 0) return 0;
  return names.slice(at + 1).reduce((sum, n) => sum + Math.max(0, phases[n] ?? 0), 0);
}

/** What a peer says of itself, as far as a pre-flight needs (the peer API's info). */
export interface PeerFacts {
  host: string;
  criu: string | null;
  cpuFlags: string[];
  memory: { availableBytes: number };
  disk: { freeBytes: number };
}

/** A peer's pods and their addresses (the peer API's pod list). */
export interface PeerPodList {
  host: string;
  pods: Array<{ name: string; address: string; live: boolean }>;
}

/** What the source asks the destination to hold: the pod, its final image, and the pre-copy rounds' images (removed once the migration ends). */
export interface MigrationRestoreRequest {
  pod: string;
  image: string;
  source: string;
  rounds: string[];
  /** 32 random bytes (hex) the source made for this migration: its resume and abort carry them. */
  secret: string;
  /**
   * Post-copy: the memory is not in the image; the destination fetches it from the source's page link on
   * this port, runs the copy at once, and keeps it only if every page arrives (see index.ts).
   */
  pages?: { port: number };
}

/** A pre-copy round's image, pushed: the destination may make its files before the freeze. */
export interface MigrationStageRequest {
  pod: string;
  image: string;
  source: string;
}

/** Where the destination's staging of the newest round is: made, failed (the restore writes the files whole), still under way, or none staged. */
export type StageState = "made" | "failed" | "pending" | "none";

export interface PeerMigrationClient extends PeerImageClient {
  /** Make a round's CRIU files ahead of the restore (answers at once; the peer works in the background). */
  migrationStage(id: string, req: MigrationStageRequest): Promise<void>;
  /** The state of the newest staged round, once it is made or after the peer waited a while for it (STAGE_WAIT_MS). */
  migrationStaged(id: string): Promise<StageState>;
  /** Whether the peer answers at all (a short request of its own). */
  health(): Promise<boolean>;
  info(): Promise<PeerFacts>;
  pods(): Promise<PeerPodList>;
  /** Restore `image` as `pod` with its tasks held stopped and its network locked; resolves when it is ready. */
  migrationRestore(id: string, req: MigrationRestoreRequest): Promise<HeldRestore>;
  /** The source committed: the held copy runs. NotFoundError when none is held (it resumed already). */
  migrationResume(id: string, secret: string): Promise<void>;
  /** The source resumed its own copy: the held one goes. */
  migrationAbort(id: string, secret: string): Promise<void>;
  /** Asked of the source by a destination that holds a copy and heard nothing. */
  migrationOutcome(id: string): Promise<MigrationOutcome>;
  /** Asked of the host a restore request names as its source: does it drive this migration, of this pod, to us? */
  migrationClaim(id: string): Promise<MigrationClaim>;
  /** Post-copy, destination side: open the source's page link on `port` and bridge it; resolves once it is up. */
  pageLink(port: number, expect: PageLinkExpect, bridge: PageBridge): Promise<void>;
}

export interface PeerMigrationClients {
  client(name: string): PeerMigrationClient;
  /** Post-copy, source side: listen for the destination's page link (one connection, proven by the secret). */
  listenPageLink(expect: PageLinkExpect, bridge: PageBridge, onRefused: (why: string) => void): { port: number; stop(): void };
}
