/** The one-line summary of pending package updates, shared by the package-manager checks. */
import type { PackageReason } from "./checker.ts";

const SHOWN = 5;

export function packageSummary(packages: readonly PackageReason[]): string {
  if (packages.length === 0) return "no pending updates";
  const security = packages.filter((p) => p.security);
  const named = (security.length ? security : packages).map((p) => `${p.name} ${p.installed} -> ${p.candidate}`);
  const list = named.slice(0, SHOWN).join(", ") + (named.length > SHOWN ? `, +${named.length - SHOWN} more` : "");
  const count = `${packages.length} update${packages.length === 1 ? "" : "s"}`;
  return security.length ? `${count}, ${security.length} security: ${list}` : `${count}: ${list}`;
}
