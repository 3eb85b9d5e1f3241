/** The status service: patch-status checks of this host and the report built from them. */
export { collectStatus, DEFAULT_CHECKERS, runCheck, type CollectOptions } from "./collect.ts";
export { buildReport, EXIT_STATUS, exitStatusOf, STATUS_SCHEMA_VERSION, type CheckReport, type StatusReport } from "./report.ts";
export { StatusReportSchema, CheckReportSchema, ReasonSchema } from "./report-schema.ts";
export { formatPrometheus } from "./prometheus.ts";
export { formatTable } from "./table.ts";
export { statusWatchPaths } from "./watch-paths.ts";
export { hostPaths, type HostPaths } from "./host-paths.ts";
export { VERDICTS, worstVerdict, isVerdict, type Verdict } from "./verdict.ts";
export type { Checker, CheckOptions, CheckResult, Reason, Runner } from "./checker.ts";
export { aptChecker } from "./apt.ts";
export { dnfChecker } from "./dnf.ts";
export { apkChecker } from "./apk.ts";
export { rebootChecker } from "./reboot.ts";
export { kernelChecker } from "./kernel.ts";
export { replacedCodeChecker } from "./replaced-code.ts";
export { compareDebianVersions } from "./debian-version.ts";
export { compareEvr, rpmvercmp } from "./rpm-version.ts";
