#!/usr/bin/env bun
/**
 * Restore time of one image on this host's kernel and inside QEMU guests
 * running Debian's own kernels (bookworm's 6.1, trixie's 6.12), as JSON:
 *   node_modules/.bin/bun bench/cross-kernel.ts
 * (root; uses dist/autopod and .cache/guest-kernels, fetched when missing:
 * see test/cross-kernel.test.ts, whose scenario this reuses).
 *
 * The image is a counter pod (busybox, about 5 MiB with its base root),
 * checkpointed here under an agent that acts as if this CPU lacked what the
 * guest's lacks, and exported. It is imported and restored into a second,
 * empty agent on this host, and in each guest. The guest runs under TCG
 * (software emulation), so its times are TCG's: each is also given as a
 * ratio to a plain process start (fork and exec of busybox `true`, the mean of
 * 100) in the same guest, and the host's the same way. Restore figures are the
 * agent's own (restore --json: totalMs, criuMs), for the guests also the wall
 * time of the CLI call (to the hundredth of a second the guest's clock gives).
 */
import { rmSync } from "node:fs";
import { countsOf, COUNTER, hostCpuFlags, lackingInGuest, probeGuestFlags, runScenario, whyNotContinued } from "../test/_cross-kernel.ts";
import { guestKernels } from "../test/_guest.ts";
import { TestHost } from "../test/_pods.ts";
import { round } from "./_stats.ts";

interface RestoreJson {
  totalMs: number;
  criuMs: number;
  materializeMs: number;
}

/** Mean fork+exec of /bin/true on this host, in ms. */
function hostProcessStartMs(): number {
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) Bun.spawnSync(["/bin/true"]);
  return (performance.now() - t0) / 100;
}

const kernels = guestKernels();
const lacking = lackingInGuest(hostCpuFlags(), await probeGuestFlags(kernels[0]!));
const a = await TestHost.start("xkb", {});
const b = await TestHost.start("xkc", {});
const result: Record<string, unknown> = { lackingCpuFlags: lacking };
try {
  await a.killAgent("SIGTERM");
  await a.startAgent(undefined, { AUTOPOD_CPU_FLAGS_MASK: lacking.join(",") });
  await a.run("counter", COUNTER);
  await a.waitForLog("counter", /\n5\n/);
  const id = await a.ok(["checkpoint", "counter"]);
  const last = Math.max(...countsOf(await a.ok(["logs", "counter"])));
  const image = `${a.dir}/counter.apod`;
  await a.ok(["image", "export", id, image]);
  result.imageBytes = Bun.file(image).size;

  // This host, into an empty agent (an image from elsewhere, as in the guest), at the same address.
  const t0 = performance.now();
  const r = JSON.parse(await b.ok(["restore", "--import", image, "--trust", "--ip", `${b.prefix}.3/24`, "--json"])) as RestoreJson;
  const wallMs = performance.now() - t0;
  const startMs = hostProcessStartMs();
  result.host = {
    kernel: (await Bun.file("/proc/sys/kernel/osrelease").text()).trim(),
    restoreTotalMs: round(r.totalMs),
    restoreCriuMs: round(r.criuMs),
    restoreWallMs: round(wallMs),
    processStartMs: round(startMs, 3),
    restoreToProcessStart: round(r.totalMs / startMs),
  };

  for (const kernel of kernels) {
    const out = await runScenario({ kernel, host: a, image, pod: "counter", timeoutMs: 900_000 });
    try {
      const rep = out.report;
      const restored = rep.get("restore-exit") === "0" ? (JSON.parse(rep.get("restore-json") ?? "{}") as RestoreJson) : null;
      const spawnMs = (Number(rep.get("spawn100-cs")) * 10) / 100;
      result[kernel.suite] = {
        kernel: rep.get("kernel"),
        isRestored: restored !== null,
        isCounting: whyNotContinued(countsOf(rep.get("logs") ?? ""), last, 5) === null,
        bootMs: Number(rep.get("booted-cs")) * 10,
        agentStartMs: Number(rep.get("agent-ready-cs")) * 10,
        restoreTotalMs: restored ? round(restored.totalMs) : null,
        restoreCriuMs: restored ? round(restored.criuMs) : null,
        restoreWallMs: Number(rep.get("restore-wall-cs")) * 10,
        processStartMs: round(spawnMs, 3),
        restoreToProcessStart: restored ? round(restored.totalMs / spawnMs) : null,
        guestRunMs: round(out.ms),
        ...(restored ? {} : { error: rep.get("restore-error") ?? rep.get("end") }),
      };
    } finally {
      rmSync(out.dir, { recursive: true, force: true });
    }
  }
} finally {
  await a.dispose();
  await b.dispose();
}
console.log(JSON.stringify(result, null, 2));
