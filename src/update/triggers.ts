/** Which of the policy's triggers a status report meets. Pure. */
import type { StatusReport } from "../status/report.ts";

export type Trigger = "security" | "any-updates" | "reboot-required";

export function triggersMet(report: Pick<StatusReport, "updates" | "needs_update" | "needs_reboot">, triggers: readonly Trigger[]): Trigger[] {
  return triggers.filter((t) => (t === "security" ? report.updates.security > 0 : t === "any-updates" ? report.needs_update : report.needs_reboot));
}
