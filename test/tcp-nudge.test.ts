/**
 * A client's TCP connection resumes as soon as its restored pod does: while the
 * pod was checkpointed its network was locked and the client's retransmission
 * timer backed off (to 6.4 s after a 7 s hold); restore makes the client
 * retransmit at once (src/platform/linux/tcp-nudge.ts). Needs root and CRIU >= 4.2.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { BUN, isRoot, REPO, rootTest } from "./_support.ts";

const T = 120_000;
/** Long enough for the client's timer to back off well past it: unnudged, its next try is at about 12.6 s. */
const HOLD_MS = 7000;
let lan: TestCluster;
let host: TestHost;

// A client on the LAN: its retransmissions leave it and are dropped at the pod's host. (A client on
// the pod's own host fails to send while the pod is away, and retries every 0.5 s without backing off.)
beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("nu", ["a"], { routed: true });
  host = lan.hosts[0]!;
}, 120_000);
afterAll(async () => {
  await lan?.dispose();
}, 120_000);

describe("restored TCP connections", () => {
  rootTest(
    "the client resumes as soon as the pod does after a long hold, not at its backed-off retransmission",
    async () => {
      const pod = await host.run("nudge", ["nc", "-ll", "-p", "7000", "-e", "cat"]);
      const ip = pod.address.split("/")[0]!;
      await Bun.sleep(200);
      const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      await Bun.sleep(700);
      const t0 = performance.now();
      const id = await host.ok(["checkpoint", "nudge"]);
      await Bun.sleep(HOLD_MS);
      await host.ok(["restore", id]);
      const pausedMs = performance.now() - t0;
      await Bun.sleep(1500);
      client.kill("SIGTERM");
      const report = JSON.parse((await new Response(client.stdout).text()).trim());
      console.log(
        `checkpoint, ${HOLD_MS} ms hold, restore: pod paused at most ${Math.round(pausedMs)} ms, client's longest gap ${Math.round(report.maxGapMs)} ms`,
      );
      expect(report).toMatchObject({ errors: [], closed: false });
      expect(report.received).toBe(report.sent);
      // The client's gap is the pause, not the pause plus the wait for its next backed-off retransmission.
      expect(report.maxGapMs).toBeLessThan(pausedMs + 1500);
      await host.ok(["rm", "--force", "nudge"]);
    },
    T,
  );
});
