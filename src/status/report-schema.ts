/**
 * The zod schema of the status report's JSON, for whoever reads it back
 * (the agent's typed client, tests). It must accept exactly what report.ts builds.
 */
import { z } from "zod";
import type { StatusReport } from "./report.ts";
import { VERDICTS } from "./verdict.ts";

const ReplacedFileSchema = z
  .object({
    path: z.string(),
    change: z.enum(["deleted", "replaced"]),
    package: z.string().optional(),
    loaded_by: z.enum(["python", "perl", "ruby"]).optional(),
  })
  .strict();

export const ReasonSchema = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("package"),
      name: z.string(),
      arch: z.string().optional(),
      installed: z.string(),
      candidate: z.string(),
      security: z.boolean(),
      security_version: z.string().optional(),
      origins: z.array(z.string()),
    })
    .strict(),
  z.object({ kind: z.literal("file"), path: z.string(), detail: z.string().optional() }).strict(),
  z
    .object({
      kind: z.literal("process"),
      pid: z.number().int(),
      command: z.string(),
      unit: z.string().optional(),
      pod: z.string().optional(),
      files: z.array(ReplacedFileSchema),
    })
    .strict(),
  z.object({ kind: z.literal("group"), group: z.enum(["unit", "pod", "other"]), name: z.string(), pids: z.array(z.number().int()) }).strict(),
  z
    .object({
      kind: z.literal("kernel"),
      change: z.enum(["version_upgrade", "abi_rebuild"]),
      running: z.string(),
      installed: z.string(),
      running_build: z.string().optional(),
      installed_build: z.string().optional(),
      image: z.string(),
    })
    .strict(),
  z.object({ kind: z.literal("lock"), path: z.string(), pid: z.number().int().optional(), command: z.string().optional() }).strict(),
  z.object({ kind: z.literal("livepatch"), name: z.string(), enabled: z.boolean(), in_transition: z.boolean() }).strict(),
  z.object({ kind: z.literal("note"), message: z.string() }).strict(),
]);

const VerdictSchema = z.enum(VERDICTS);

export const CheckReportSchema = z
  .object({
    check: z.string(),
    source: z.string(),
    verdict: VerdictSchema,
    summary: z.string(),
    reasons: z.array(ReasonSchema),
    error: z.string().optional(),
    duration_ms: z.number().nonnegative(),
  })
  .strict();

export const StatusReportSchema = z
  .object({
    schema_version: z.literal(1),
    host: z.string(),
    checked_at: z.iso.datetime(),
    duration_ms: z.number().nonnegative(),
    verdict: VerdictSchema,
    needs_update: z.boolean(),
    needs_reboot: z.boolean(),
    complete: z.boolean(),
    updates: z.object({ total: z.number().int().nonnegative(), security: z.number().int().nonnegative() }).strict(),
    checks: z.array(CheckReportSchema),
  })
  .strict();

// The schema and the TypeScript types must describe the same JSON.
type Parsed = z.infer<typeof StatusReportSchema>;
const _toSchema = (r: StatusReport): Parsed => r;
const _fromSchema = (r: Parsed): StatusReport => r;
void _toSchema;
void _fromSchema;
