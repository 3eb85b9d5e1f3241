import { runDoctor } from "../doctor/doctor.ts";
import { flagBool } from "./args.ts";
import type { Command } from "./command.ts";

export const doctorCommand: Command = {
  name: "doctor",
  summary: "check that this host has what autopod needs",
  usage: "doctor [--json]",
  details:
    "Checks the kernel, privileges and each capability autopod and CRIU use (what fails without it, and whether the carried CRIU works around it), namespaces, CRIU (version for this kernel, autopod's patches, `criu check`, dirty tracking), nftables, iproute2, util-linux, the cgroup memory controller, free space under the state directory and systemd. Exits 1 when something required is missing, and says how to fix it.",
  options: [{ name: "json", kind: "boolean", help: "print JSON" }],
  async run(ctx) {
    const { config } = await ctx.config();
    const report = await runDoctor({
      stateDir: config.state_dir,
      criuPath: config.criu,
      isNativeHashWanted: config.store.native_hash,
      ...(config.network.mode === "routed" ? { routedLanInterface: config.network.lan_interface } : {}),
    });
    if (flagBool(ctx.args, "json")) {
      ctx.out(JSON.stringify(report, null, 2));
      return report.ok ? 0 : 1;
    }
    const mark = { ok: "ok  ", warn: "warn", fail: "FAIL" } as const;
    const width = Math.max(...report.checks.map((c) => c.title.length));
    for (const c of report.checks) {
      ctx.out(`[${mark[c.status]}] ${c.title.padEnd(width)}  ${c.detail}`);
      if (c.fix && c.status !== "ok") ctx.out(`       ${"".padEnd(width)}  fix: ${c.fix}`);
    }
    const failed = report.checks.filter((c) => c.status === "fail" && c.required).length;
    ctx.out(report.ok ? "\nThis host can run autopod." : `\n${failed} required check${failed === 1 ? "" : "s"} failed: this host cannot run autopod yet.`);
    return report.ok ? 0 : 1;
  },
};
