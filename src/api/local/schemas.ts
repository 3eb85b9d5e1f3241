/** The local API's request bodies: validated here, at the edge, once. */
import { z } from "zod";

const absPath = z
  .string()
  .min(1)
  .refine((s) => s.startsWith("/"), "an absolute path");

export const CreatePodBody = z
  .object({
    name: z.string().min(1).max(200),
    rootfs: absPath,
    cmd: z.array(z.string()).min(1, "a command"),
    address: z.string().max(64).optional(),
    hostname: z.string().max(200).optional(),
    volumes: z
      .array(z.object({ host: absPath, pod: z.string().min(1), readonly: z.boolean().default(false) }).strict())
      .max(64)
      .default([]),
    env: z.record(z.string(), z.string()).default({}),
    memoryBytes: z.number().int().positive().nullable().optional(),
    cpus: z.number().positive().nullable().optional(),
    pidsMax: z.number().int().positive().nullable().optional(),
    workdir: z.string().min(1).optional(),
    /** false: the pod may use all of this host's CPU features, not only the cluster's baseline. */
    cpuBaseline: z.boolean().optional(),
    user: z
      .object({
        uid: z
          .number()
          .int()
          .min(0)
          .max(2 ** 32 - 2),
        gid: z
          .number()
          .int()
          .min(0)
          .max(2 ** 32 - 2)
          .nullable(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type CreatePodBody = z.infer<typeof CreatePodBody>;

/** The grace period stays below the API's idle timeout (255 s), which a silent stop would hit. */
export const MAX_STOP_TIMEOUT_SECONDS = 240;
export const StopPodBody = z.object({ timeoutSeconds: z.number().min(0).max(MAX_STOP_TIMEOUT_SECONDS).default(10) }).strict();

export const ExecBody = z.object({ cmd: z.array(z.string()).min(1, "a command") }).strict();

/** The first frame of an interactive exec: the command, whether stdin follows, and the terminal's size for a pty. */
export const ExecStartBody = z
  .object({
    cmd: z.array(z.string()).min(1, "a command"),
    stdin: z.boolean().default(false),
    tty: z
      .object({ rows: z.number().int().min(1).max(65535), cols: z.number().int().min(1).max(65535) })
      .strict()
      .nullable()
      .default(null),
  })
  .strict();

export { describeZodError } from "../../errors.ts";
