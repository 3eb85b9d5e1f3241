/**
 * A host bundle: what a new host needs to join the cluster (its key and
 * certificate, the CA certificate and the current revocation list), in one
 * file that can be carried to an air-gapped host. It holds a private key:
 * it is written mode 0600 and should be deleted once joined.
 */
import { z } from "zod";
import { describeZodError, InvalidArgumentError } from "../errors.ts";

export const BUNDLE_KIND = "autopod-host-bundle";
export const BUNDLE_VERSION = 1;
/** A bundle is a few KiB; anything much larger is not one. */
export const MAX_BUNDLE_BYTES = 256 << 10;

const pem = (label: string) =>
  z
    .string()
    .max(64 << 10)
    .refine((s) => s.includes(`-----BEGIN ${label}-----`) && s.includes(`-----END ${label}-----`), `a PEM ${label}`);

export const HostNameSchema = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "a host name: 1 to 63 lower-case letters, digits and '-', not at either end");
export const ClusterNameSchema = HostNameSchema;

export const BundleSchema = z
  .object({
    kind: z.literal(BUNDLE_KIND),
    version: z.literal(BUNDLE_VERSION),
    cluster: ClusterNameSchema,
    host: HostNameSchema,
    addresses: z.array(z.string().max(253)).max(32),
    caCert: pem("CERTIFICATE"),
    cert: pem("CERTIFICATE"),
    key: pem("PRIVATE KEY"),
    crl: pem("X509 CRL"),
  })
  .strict();

export type HostBundle = z.infer<typeof BundleSchema>;

export function encodeBundle(b: Omit<HostBundle, "kind" | "version">): string {
  return JSON.stringify({ kind: BUNDLE_KIND, version: BUNDLE_VERSION, ...b }, null, 2) + "\n";
}

export function decodeBundle(text: string): HostBundle {
  if (text.length > MAX_BUNDLE_BYTES) throw new InvalidArgumentError(`Not a host bundle: ${text.length} bytes, more than ${MAX_BUNDLE_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError("Not a host bundle: not JSON (make one with `autopod cluster add-host NAME` on the cluster's first host)");
  }
  const parsed = BundleSchema.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(`Not a valid host bundle: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
