/**
 * An air-gapped bare host: Debian 12 and Debian 13 minbase roots with only iproute2, nftables and util-linux added (no
 * compiler, no -dev package, no CRIU), entered with no network. dist/autopod is copied in and installed with
 * `install.sh --from-file`; doctor passes with the CRIU the binary brought, and a pod runs, checkpoints and restores
 * with it, its counter going on from where it stopped. Without iproute2 or nftables, doctor names the package.
 */
import { describe, expect } from "bun:test";
import { DIST, REPO, rootTest } from "./_support.ts";
import { bareRoot, onBareRoot, type Suite } from "./_bare-host.ts";
import { testRootfs } from "./_pods.ts";
import { join } from "node:path";

/** Run on the bare root: install, doctor, an agent, a counting pod, checkpoint, restore; then doctor without ip and nft. */
export const BARE_SCRIPT = `
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
step() { echo "$1" > /root/out/step; }
step install
t0=$(date +%s%N)
sh /root/install.sh --from-file /root/autopod > /root/out/install.log 2>&1 || exit 1
autopod doctor --json > /root/out/doctor.json
echo $? > /root/out/doctor.rc
t1=$(date +%s%N)
echo $(( (t1 - t0) / 1000000 )) > /root/out/install-to-doctor.ms
[ "$(cat /root/out/doctor.rc)" = 0 ] || exit 1
[ -n "\${BARE_ONLY_INSTALL:-}" ] && exit 0
step agent
autopod agent > /root/out/agent.log 2>&1 &
i=0
until autopod ps > /dev/null 2>&1; do i=$((i + 1)); [ $i -lt 300 ] || exit 1; sleep 0.1; done
step run
autopod run count --rootfs /srv/podroot -- sh -c 'i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.02; done' > /root/out/run.log 2>&1 || exit 1
sleep 1
autopod exec count -- cat /counter > /root/out/counter-before-checkpoint 2>&1
step checkpoint
autopod checkpoint count > /root/out/checkpoint.id 2> /root/out/checkpoint.err || exit 1
sleep 0.5
step restore
autopod restore "$(cat /root/out/checkpoint.id)" > /root/out/restore.log 2>&1 || exit 1
sleep 1
step exec
autopod exec count -- cat /counter > /root/out/counter 2> /root/out/exec.err || exit 1
autopod rm --force count > /dev/null 2>&1
step missing-tools
command -v ip > /dev/null && command -v nft > /dev/null || exit 1
mkdir /root/hidden
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for t in ip nft; do
    if [ -e "$d/$t" ] || [ -L "$d/$t" ]; then mv "$d/$t" "/root/hidden/$(echo "$d" | tr / _)-$t"; fi
  done
done
autopod doctor --json > /root/out/doctor-without-tools.json
echo $? > /root/out/doctor-without-tools.rc
step done
`;

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
