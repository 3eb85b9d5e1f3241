/**
 * An air-gapped bare host: Debian 12 and Debian 13 minbase roots with only iproute2, nftables and util-linux added (no
 * compiler, no -dev package, no CRIU), entered with no network. dist/autopod is copied in and installed with
 * `install.sh --from-file`; doctor passes with the CRIU the binary brought, and a pod runs, checkpoints and restores
 * with it, its counter going on from where it stopped. Without iproute2 or nftables, doctor names the package.
 */
import { describe, expect } from "bun:test";
import { DIST, REPO, rootTest } from "./_support.ts";
import { BARE_SCRIPT, bareRoot, onBareRoot, type Suite } from "./_bare-host.ts";
import { testRootfs } from "./_pods.ts";
import { join } from "node:path";

interface Check {
  id: string;
  status: string;
  detail: string;
  fix?: string;
}

function expectCounting(text: string) {
  const xs = text.trim().split("\n").map(Number);
  const bad = xs.findIndex((x, i) => x !== i + 1);
  expect(bad === -1 ? "contiguous" : `line ${bad + 1} is ${xs[bad]}`).toBe("contiguous");
  return xs.length;
}

describe("a bare, air-gapped Debian host", () => {
  for (const suite of ["bookworm", "trixie"] as Suite[]) {
    rootTest(
      `${suite}: install.sh --from-file, doctor passes with the CRIU the binary brought, a pod checkpoints and restores with it`,
      async () => {
        const root = bareRoot(suite);
        const r = await onBareRoot(
          root,
          BARE_SCRIPT,
          [
            [DIST, "/root/autopod"],
            [join(REPO, "install.sh"), "/root/install.sh"],
          ],
          { podRoot: testRootfs() },
        );
        const why = `stopped at step "${r.out.step?.trim()}" (exit ${r.exitCode}): ${r.stderr}\n${Object.entries(r.out)
          .filter(([k]) => /\.(log|err|json)$/.test(k))
          .map(([k, v]) => `--- ${k}\n${v.slice(-3000)}`)
          .join("\n")}`;
        expect({ step: r.out.step?.trim(), why: r.out.step?.trim() === "done" ? "" : why }).toEqual({ step: "done", why: "" });
        expect(r.exitCode).toBe(0);

        // No CRIU came with the root: install.sh put the binary's own under /usr/local/lib/autopod/criu, and doctor uses it.
        expect(r.out["install.log"]).toContain("installed CRIU 4.2.1");
        const doctor = JSON.parse(r.out["doctor.json"]!);
        expect(doctor.ok).toBe(true);
        expect(doctor.criu.source).toBe("bundled");
        expect(doctor.criu.path).toBe("/usr/local/lib/autopod/criu/current/bin/criu");
        expect(doctor.criu.why).toContain("there is no system CRIU");
        const checks = new Map<string, Check>(doctor.checks.map((c: Check) => [c.id, c]));
        expect(checks.get("criu")!.detail).toContain("/usr/local/lib/autopod/criu/current/bin/criu version 4.2.1");
        expect(checks.get("criu_check")!.status).toBe("ok");
        expect(checks.get("criu_patches")!.status).toBe("ok");

        // The pod counted on from where the checkpoint stopped it.
        const before = expectCounting(r.out["counter-before-checkpoint"] ?? "");
        const after = expectCounting(r.out.counter!);
        expect(after).toBeGreaterThan(before);

        // Without iproute2 and nftables, doctor fails and names the packages.
        expect(r.out["doctor-without-tools.rc"]?.trim()).toBe("1");
        const without = new Map<string, Check>(JSON.parse(r.out["doctor-without-tools.json"]!).checks.map((c: Check) => [c.id, c]));
        expect(without.get("iproute2")).toMatchObject({ status: "fail", fix: "apt-get install iproute2" });
        expect(without.get("nftables")!.status).toBe("fail");
        expect(without.get("nftables")!.fix).toContain("apt-get install nftables");
      },
      300_000,
    );
  }
});
