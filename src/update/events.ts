/**
 * The update cycle's events: every step, in order, with a sequence number.
 * Each goes to the log, to a bounded file on disk (the newest kept when it
 * grows past its cap), and to live subscribers (`autopod events -f`).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";

export type EventLevel = "info" | "warn" | "error";

export interface UpdateEvent {
  seq: number;
  /** ISO 8601, UTC. */
  time: string;
  level: EventLevel;
  /** What happened, as a stable dotted name: "lock.taken", "cycle.failed". */
  kind: string;
  msg: string;
  /** The cycle it belongs to, when in one. */
  cycle?: string;
  fields?: Record<string, unknown>;
}

export interface EventSink {
  emit(level: EventLevel, kind: string, msg: string, fields?: Record<string, unknown>, cycle?: string): UpdateEvent;
}

export const DEFAULT_MAX_EVENT_BYTES = 1 << 20;

export class EventLog implements EventSink {
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #log: Logger | undefined;
  readonly #subscribers = new Set<(e: UpdateEvent) => void>();
  #seq = 0;
  #bytes = 0;

  constructor(path: string, opts: { maxBytes?: number; log?: Logger } = {}) {
    this.#path = path;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
    this.#log = opts.log;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const last = this.list(0).at(-1);
    this.#seq = last?.seq ?? 0;
    this.#bytes = existsSync(path) ? statSync(path).size : 0;
  }

  emit(level: EventLevel, kind: string, msg: string, fields?: Record<string, unknown>, cycle?: string): UpdateEvent {
    const event: UpdateEvent = {
      seq: ++this.#seq,
      time: new Date().toISOString(),
      level,
      kind,
      msg,
      ...(cycle ? { cycle } : {}),
      ...(fields && Object.keys(fields).length ? { fields } : {}),
    };
    this.#log?.[level](msg, { event: kind, ...(cycle ? { cycle } : {}), ...fields });
    const line = JSON.stringify(event) + "\n";
    try {
      if (this.#bytes + line.length > this.#maxBytes) this.#trim();
      appendFileSync(this.#path, line, { mode: 0o600 });
      this.#bytes += Buffer.byteLength(line);
    } catch (e) {
      this.#log?.error("cannot keep an update event on disk", { error: (e as Error).message });
    }
    for (const s of this.#subscribers) s(event);
    return event;
  }

  /** Events after `since` (a sequence number), oldest first, at most `limit` of the newest. */
  list(since = 0, limit = Number.MAX_SAFE_INTEGER): UpdateEvent[] {
    let text: string;
    try {
      text = readFileSync(this.#path, "utf8");
    } catch {
      return [];
    }
    const out: UpdateEvent[] = [];
    for (const line of text.split("\n")) {
      if (!line) continue;
      try {
        const e = JSON.parse(line) as UpdateEvent;
        if (typeof e.seq === "number" && e.seq > since) out.push(e);
      } catch {
        // a line cut by a crash: skip it
      }
    }
    return out.slice(-limit);
  }

  /** Call `fn` with every new event until the returned function is called. */
  subscribe(fn: (e: UpdateEvent) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** Keep the newest half: written to a new file, then renamed over the old one. */
  #trim(): void {
    const text = existsSync(this.#path) ? readFileSync(this.#path, "utf8") : "";
    let keep = text.slice(text.length - Math.floor(this.#maxBytes / 2));
    const nl = keep.indexOf("\n");
    keep = nl >= 0 && keep.length < text.length ? keep.slice(nl + 1) : keep;
    const tmp = `${this.#path}.tmp`;
    writeFileSync(tmp, keep, { mode: 0o600 });
    renameSync(tmp, this.#path);
    this.#bytes = Buffer.byteLength(keep);
  }
}

/** One event as a line for people: time, level, message, then its fields. */
export function formatEvent(e: UpdateEvent): string {
  const fields = Object.entries(e.fields ?? {})
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return `${e.time.replace("T", " ").slice(0, 19)} ${e.level.toUpperCase().padEnd(5)} ${e.msg}${fields ? `  ${fields}` : ""}`;
}
