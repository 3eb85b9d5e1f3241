/**
 * Request bodies read under a limit: refused by their Content-Length before a
 * byte is read, or as soon as the bytes streamed in pass the limit, so a huge
 * body never sits in the agent's memory.
 */
import type { z } from "zod";
import { describeZodError, InvalidArgumentError } from "../../errors.ts";

/** The body was over its route's limit; nothing was done. */
export class BodyTooLargeError extends InvalidArgumentError {
  override name = "BodyTooLargeError";
}

/** The request body as text, at most `maxBytes` of it. */
export async function readBoundedText(req: Request, maxBytes: number): Promise<string> {
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const n = Number(declared);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`Invalid Content-Length "${declared.slice(0, 40)}"`);
    if (n > maxBytes) throw new BodyTooLargeError(`The request body is too large: ${n} bytes; the limit is ${maxBytes}`);
  }
  if (req.body === null) return "";
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError(`The request body is too large: more than ${maxBytes} bytes`);
      }
      parts.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(Buffer.concat(parts));
}

/** A JSON body read under `maxBytes` (empty: {}), validated against `schema`. */
export async function readJsonBody<T extends z.ZodType>(req: Request, schema: T, maxBytes: number): Promise<z.infer<T>> {
  const text = await readBoundedText(req, maxBytes);
  let raw: unknown;
  try {
    raw = text === "" ? {} : JSON.parse(text);
  } catch {
    throw new InvalidArgumentError("The request body is not valid JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new InvalidArgumentError(`Invalid request: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
