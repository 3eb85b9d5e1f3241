/**
 * The reboot check: the sentinels package scripts leave (/run/reboot-required
 * with its .pkgs list, /var/run/reboot-needed), `needs-restarting -r` where
 * it exists, and the live patches the running kernel carries.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import type { Checker, CheckOptions, CheckResult, FileReason, Reason } from "./checker.ts";
import { inRoot } from "./host-paths.ts";
import { readLivepatches } from "./livepatch.ts";

/** The packages listed in /run/reboot-required.pkgs, in order, without repeats. */
export function parseRebootRequiredPkgs(text: string): string[] {
  return [
    ...new Set(
      text
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
}

/** What `needs-restarting -r` names as updated since boot (its "  * name" lines). */
export function parseNeedsRestarting(text: string): string[] {
  return text
    .split("\n")
    .map((l) => /^\s*\*\s+(\S+)/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return null;
    if ((e as NodeJS.ErrnoException).code === "EISDIR") return "";
    throw e;
  }
}

export const rebootChecker: Checker = {
  name: "reboot",
  source: "/run/reboot-required(.pkgs), /var/run/reboot-needed, needs-restarting -r, /sys/kernel/livepatch",
  async check(opts: CheckOptions): Promise<CheckResult> {
    const found: FileReason[] = [];
    const notes: Reason[] = [];
    const sentinels = [...new Set([join(opts.paths.run, "reboot-required"), inRoot(opts.paths, "var/run/reboot-needed")])];
    for (const path of sentinels) {
      try {
        if ((await readIfExists(path)) === null) continue;
      } catch (e) {
        notes.push({ kind: "note", message: `cannot read "${path}": ${errorMessage(e)}` });
        continue;
      }
      const pkgs = path.endsWith("reboot-required") ? await readIfExists(`${path}.pkgs`).catch(() => null) : null;
      const list = pkgs === null ? [] : parseRebootRequiredPkgs(pkgs);
      found.push({ kind: "file", path, ...(list.length ? { detail: `packages: ${list.join(", ")}` } : {}) });
    }

    let needsRestarting: string[] | null = null;
    const tool = opts.paths.root === "/" ? opts.which("needs-restarting") : null;
    if (tool) {
      const r = await opts.run([tool, "-r"], { timeoutMs: opts.commandTimeoutMs, env: { ...process.env, LC_ALL: "C" } });
      if (r.exitCode === 1 && !r.timedOut) {
        needsRestarting = parseNeedsRestarting(r.stdout);
        found.push({
          kind: "file",
          path: tool,
          detail: `needs-restarting -r: ${needsRestarting.length ? `updated since boot: ${needsRestarting.join(", ")}` : "reboot required"}`,
        });
      } else if (r.exitCode !== 0 || r.timedOut) {
        notes.push({ kind: "note", message: `"needs-restarting -r" ${r.timedOut ? "timed out" : `exited with status ${r.exitCode}`}` });
      }
    }

    const patches = await readLivepatches(opts.paths.sys);
    const patchNote = patches.length
      ? `; live patches: ${patches.map((p) => `${p.name}${p.enabled ? "" : " (disabled)"}${p.in_transition ? " (in transition)" : ""}`).join(", ")}`
      : "";
    const source = tool ? undefined : "/run/reboot-required(.pkgs), /var/run/reboot-needed, /sys/kernel/livepatch (needs-restarting not installed)";
    if (found.length === 0) {
      return {
        verdict: "ok",
        summary: `no reboot sentinel${tool ? ", needs-restarting -r says none needed" : ""}${patchNote}`,
        reasons: [...patches, ...notes],
        ...(source ? { source } : {}),
      };
    }
    const what = found.map((f) => (f.path === tool ? f.detail! : `${f.path}${f.detail ? ` (${f.detail})` : ""}`)).join("; ");
    return { verdict: "reboot_required", summary: `${what}${patchNote}`, reasons: [...found, ...patches, ...notes], ...(source ? { source } : {}) };
  },
};
