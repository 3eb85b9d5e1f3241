/** What peers send each other: every body and answer is checked against these. */
import { z } from "zod";

export const PeerInfoSchema = z
  .object({
    cluster: z.string().max(63),
    host: z.string().max(63),
    version: z.string().max(64),
    criu: z.string().max(64).nullable(),
    kernel: z.string().max(256),
    arch: z.string().max(32),
    cpuFlags: z.array(z.string().max(64)).max(1024),
    memory: z.object({ totalBytes: z.number().nonnegative(), availableBytes: z.number().nonnegative() }).strict(),
    disk: z.object({ freeBytes: z.number().nonnegative() }).strict(),
    pods: z.array(z.object({ name: z.string().max(64), state: z.string().max(32), address: z.string().max(64).nullable() }).strict()).max(100_000),
    verdict: z.string().max(64).nullable(),
    revocationListTime: z.string().max(64),
  })
  .strict();

export type PeerInfo = z.infer<typeof PeerInfoSchema>;

/** The pods a host has and their addresses (routed pod network: addresses are unique across the cluster). */
export const PeerPodsSchema = z
  .object({
    host: z.string().max(63),
    pods: z
      .array(
        z
          .object({
            name: z.string().max(64),
            address: z.string().max(64),
            /** Has or is getting processes: holds its address on the LAN. */
            live: z.boolean(),
          })
          .strict(),
      )
      .max(100_000),
  })
  .strict();

export type PeerPods = z.infer<typeof PeerPodsSchema>;

/** "Which of these images do you hold?": candidate parents for a manifest delta (src/transfer/manifest-parent.ts). */
export const MAX_HELD_QUESTION = 64;
const ImageIdSchema = z.string().regex(/^[0-9a-f]{64}$/);
export const HeldImagesQuestionSchema = z.object({ ids: z.array(ImageIdSchema).max(MAX_HELD_QUESTION) }).strict();
export const HeldImagesAnswerSchema = z.object({ held: z.array(ImageIdSchema).max(MAX_HELD_QUESTION) }).strict();

/** A revocation list in PEM; a few KiB per hundred hosts. */
export const MAX_CRL_BYTES = 1 << 20;
