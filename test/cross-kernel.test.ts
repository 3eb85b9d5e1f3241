/**
 * Pods migrate across kernel versions: a counter pod checkpointed on this host
 * and exported is imported and restored inside QEMU (TCG) running Debian's own
 * kernels, bookworm's 6.1 and trixie's 6.12, from an initramfs holding busybox,
 * the autopod binary, CRIU and the few programs the agent runs, and nothing
 * else of autopod (test/_guest.ts, test/fixtures/guest-init.sh). There it goes
 * on counting from where it stopped, and, checkpointed in the guest, comes
 * back to this host and goes on again.
 *
 * TCG's CPU lacks features of this host's: the counter runs under an agent
 * that acts as if its CPU lacked them too (cpu.flags_mask), and an image made
 * without that is refused in the guest, naming them, before anything changes.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { rmSync } from "node:fs";
import { countsOf, COUNTER, hostCpuFlags, lackingInGuest, probeGuestFlags, runScenario, whyNotContinued } from "./_cross-kernel.ts";
import { type GuestKernel, guestKernels, qemuBinary } from "./_guest.ts";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

/** One guest run: boot, agent start and restore under TCG on a loaded machine (about 1 to 2 minutes here). */
const GUEST_TIMEOUT = 900_000;

describe("a pod checkpointed on this kernel restores on Debian's 6.1 and 6.12 kernels", () => {
  let host: TestHost;
  let kernels: GuestKernel[];
  let lacking: string[];
  let dir: string;
  let counterImage: string;
  let wideImage: string;
  let last: number;

  beforeAll(async () => {
    if (!isRoot) return;
    qemuBinary();
    kernels = guestKernels();
    lacking = lackingInGuest(hostCpuFlags(), await probeGuestFlags(kernels[0]!));
    host = await TestHost.start("xk");
    dir = host.dir;
    // Made with all of this host's CPU: the guest must refuse it (when TCG lacks something this CPU has).
    await host.run("wide", COUNTER);
    await host.waitForLog("wide", /\n3\n/);
    const wideId = await host.ok(["checkpoint", "wide"]);
    wideImage = `${dir}/wide.apod`;
    await host.ok(["image", "export", wideId, wideImage]);
    // The counter, under an agent that acts as if this CPU lacked what the guest lacks.
    await host.killAgent("SIGTERM");
    await host.startAgent(undefined, { AUTOPOD_CPU_FLAGS_MASK: lacking.join(",") });
    await host.run("counter", COUNTER);
    await host.waitForLog("counter", /\n5\n/);
    const id = await host.ok(["checkpoint", "counter"]);
    last = Math.max(...countsOf((await host.ok(["logs", "counter"])) || ""));
    counterImage = `${dir}/counter.apod`;
    await host.ok(["image", "export", id, counterImage]);
  }, 600_000);
  afterAll(async () => {
    await host?.dispose();
  }, 120_000);

  for (const suite of ["bookworm", "trixie"]) {
    rootTest(
      `${suite}: imported and restored in the guest, the counter goes on from where it stopped, and again back on this host; what the guest lacks is refused first`,
      async () => {
        const kernel = kernels.find((k) => k.suite === suite)!;
        const out = await runScenario({
          kernel,
          host,
          image: counterImage,
          pod: "counter",
          ...(lacking.length ? { refused: wideImage } : {}),
          isBack: true,
          timeoutMs: GUEST_TIMEOUT,
        });
        try {
          const r = out.report;
          const context = `guest ${suite}:\n${out.serial.slice(-6000)}`;
          expect(out.timedOut, context).toBe(false);
          expect(r.get("end"), context).toBe("ok");
          expect(r.get("kernel")).toBe(kernel.release);
          expect(r.get("restore-exit"), context).toBe("0");
          const why = whyNotContinued(countsOf(r.get("logs") ?? ""), last, 5);
          expect(why, context).toBeNull();
          expect(JSON.parse(r.get("ps") ?? "[]")[0]).toMatchObject({ name: "counter", state: "running" });
          // A kernel without nftables, a root without tar: refused before anything changed, saying why.
          expect(r.get("no-nftables-exit")).not.toBe("0");
          expect(r.get("no-nftables-message")).toContain("This host cannot restore the pod: this kernel has no nftables");
          expect(r.get("no-nftables-unchanged")).toBe("yes");
          expect(r.get("no-tar-exit")).not.toBe("0");
          expect(r.get("no-tar-message")).toContain('This host has no "tar", which CRIU runs to restore the image\'s tmpfs mounts');
          expect(r.get("no-tar-unchanged")).toBe("yes");
          if (lacking.length) {
            // Refused before anything changed, naming what the guest's CPU lacks.
            expect(r.get("refused-exit")).not.toBe("0");
            expect(r.get("refused-message")).toContain(
              `This host's CPU lacks features the image's processes may use: ${lacking.join(", ")}; restore it on a host that has them`,
            );
            expect(r.get("refused-unchanged")).toBe("yes");
          }
          // Checkpointed in the guest, it comes back here and counts on from the guest's last number.
          expect(out.back, context).not.toBeNull();
          const guestLast = Math.max(...countsOf(r.get("logs") ?? ""));
          const back = `back-${suite}`;
          const ip = `${host.prefix}.${suite === "bookworm" ? 77 : 78}/24`;
          await host.ok(["restore", "--import", out.back!.file, "--trust", "--name", back, "--ip", ip]);
          await host.waitForLog(back, new RegExp(`\\n${guestLast + 5}\\n`), 0, 60_000);
          expect(whyNotContinued(countsOf((await host.ok(["logs", back])) || ""), guestLast, 5)).toBeNull();
        } finally {
          rmSync(out.dir, { recursive: true, force: true });
        }
      },
      GUEST_TIMEOUT + 120_000,
    );
  }
});
