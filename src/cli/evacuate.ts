import { InvalidArgumentError } from "../errors.ts";
import type { EvacuationReport, ReturnReport } from "../evacuate/index.ts";
import { formatBytes } from "../format.ts";
import { clientFor } from "./_client.ts";
import { flagBool, flagList, flagString } from "./args.ts";
import type { Command } from "./command.ts";

export const evacuateCommand: Command = {
  name: "evacuate",
  summary: "move every running pod off this host, live, to peers",
  usage: "evacuate [--to PEER...] [--parallel N] [--dry-run] [--no-suspend] [--json]\n       autopod evacuate --return [--json]",
  details:
    "Each running pod moves by live migration to a peer chosen for it: one that answers, does not need a reboot itself, is not " +
    "evacuating or updating, and has the CRIU, CPU features, memory and disk for it; among those, clean peers before ones with updates " +
    "pending, then the one with the fewest pods. A pod no peer can take is suspended to local disk (checkpointed here, restored by " +
    "--return) unless --no-suspend; a pod that can neither move nor be suspended keeps running here, and the report says why. " +
    "Evacuation never kills a pod. Where each pod went is recorded; `autopod evacuate --return` asks the peers to migrate the pods " +
    "back and restores the suspended ones. Progress goes to stderr.",
  options: [
    { name: "to", kind: "repeat", value: "PEER", help: "consider only these peers (repeat the flag, or b,c; default: every peer)" },
    { name: "parallel", kind: "string", value: "N", help: "migrations at once, 1 to 16 (default 2)" },
    { name: "dry-run", kind: "boolean", help: "print the plan; move nothing" },
    { name: "no-suspend", kind: "boolean", help: "a pod no peer can take keeps running here instead of being suspended to disk" },
    { name: "return", kind: "boolean", help: "bring the evacuated pods home: peers migrate them back, suspended ones are restored" },
    { name: "json", kind: "boolean", help: "print the report as JSON" },
  ],
  async run(ctx) {
    if (ctx.args.positionals.length)
      throw new InvalidArgumentError(`evacuate takes no pod names (got "${ctx.args.positionals[0]}"): it moves every running pod`);
    const isJson = flagBool(ctx.args, "json");
    const onEvent = (e: { message: string; pod?: string }) => ctx.err(e.pod ? `${e.pod}: ${e.message}` : e.message);
    if (flagBool(ctx.args, "return")) {
      const extra = [
        flagList(ctx.args, "to").length ? "--to" : "",
        flagString(ctx.args, "parallel") !== undefined ? "--parallel" : "",
        flagBool(ctx.args, "dry-run") ? "--dry-run" : "",
        flagBool(ctx.args, "no-suspend") ? "--no-suspend" : "",
      ].filter(Boolean);
      if (extra.length) throw new InvalidArgumentError(`--return takes no ${extra.join(", ")}`);
      const r = await (await clientFor(ctx)).bringHome(onEvent);
      ctx.out(isJson ? JSON.stringify(r, null, 2) : formatReturn(r));
      return r.pods.some((p) => p.outcome === "failed") ? 1 : 0;
    }
    const raw = flagString(ctx.args, "parallel");
    if (raw !== undefined && (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 16))
      throw new InvalidArgumentError(`--parallel "${raw}": expected a whole number from 1 to 16`);
    const to = flagList(ctx.args, "to").flatMap((t) => t.split(","));
    if (to.some((t) => t === "")) throw new InvalidArgumentError("--to needs peer names: `--to b --to c` or `--to b,c`");
    const r = await (await clientFor(ctx)).evacuate(
      {
        ...(to.length ? { to } : {}),
        ...(raw !== undefined ? { parallel: Number(raw) } : {}),
        dryRun: flagBool(ctx.args, "dry-run"),
        suspendFallback: !flagBool(ctx.args, "no-suspend"),
      },
      onEvent,
    );
    ctx.out(isJson ? JSON.stringify(r, null, 2) : formatEvacuation(r));
    return r.pods.some((p) => p.outcome === "stayed") ? 1 : 0;
  },
};

function formatEvacuation(r: EvacuationReport): string {
  if (r.pods.length === 0) return "no running pods: nothing to evacuate";
  const lines = r.pods.map((p) => {
    if (r.dryRun)
      return p.to
        ? `${p.pod}\twould migrate to "${p.to}"`
        : `${p.pod}\twould be ${p.outcome === "suspended" ? "suspended to disk" : "left running here"}: ${p.reason}`;
    // Each failed try first, so the line of the outcome says where it ended.
    const tries = (p.attempts ?? []).map((a, i) => `${p.pod}\ttry ${i + 1} failed: ${a.reason}\n`).join("");
    if (p.outcome === "migrated")
      return `${tries}${p.pod}\tmigrated to "${p.to}": frozen ${p.freezeMs} ms, ${formatBytes(p.bytesSent ?? 0)} sent${p.pagesBytes === undefined ? "" : `, then ${formatBytes(p.pagesBytes)} of pages pulled`}`;
    if (p.outcome === "suspended") return `${tries}${p.pod}\tsuspended to disk (frozen ${p.freezeMs} ms): ${p.reason}`;
    return `${tries}${p.pod}\tstays running here: ${p.reason}`;
  });
  return [...lines, r.dryRun ? "(dry run: nothing moved)" : `in ${r.wallMs} ms`].join("\n");
}

function formatReturn(r: ReturnReport): string {
  if (r.pods.length === 0) return "no pods are away";
  const lines = r.pods.map((p) =>
    p.outcome === "failed" ? `${p.pod}\tnot back: ${p.reason}` : p.outcome === "returned" ? `${p.pod}\tback from "${p.from}"` : `${p.pod}\trestored from disk`,
  );
  return [...lines, `in ${r.wallMs} ms`].join("\n");
}
