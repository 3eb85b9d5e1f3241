/**
 * Update windows, like Zincati's periodic strategy and kured's reboot days:
 * each window is a set of weekdays, a start time and a length in minutes, in
 * one time zone. A window is a span of the local week (wall-clock time), so a
 * window that starts late on one day runs past midnight into the next, and
 * Sunday's runs into Monday. A daylight-saving change shortens (spring) or
 * lengthens (autumn) a window that spans it, as wall-clock time does. No
 * windows at all means "at any time". Pure: the time comes from the caller.
 */
import { InvalidArgumentError } from "../errors.ts";

export interface WindowSpec {
  days: string[];
  start_time: string;
  length_minutes: number;
}

const WEEK_MINUTES = 7 * 24 * 60;
const DAY_INDEX: Record<string, number> = { mon: 0, tue: 1, wed: 2, thu: 3, fri: 4, sat: 5, sun: 6 };

/** A span of the week in minutes since Monday 00:00, local time; end may pass the week's end (it wraps). */
interface Span {
  start: number;
  end: number;
}

export class UpdateWindows {
  readonly #spans: Span[];
  readonly #format: Intl.DateTimeFormat;
  readonly timeZone: string;

  /** Throws InvalidArgumentError for a window that can never open or a time zone the system does not know. */
  constructor(specs: readonly WindowSpec[], timeZone = "UTC") {
    this.timeZone = timeZone;
    try {
      this.#format = new Intl.DateTimeFormat("en-US", {
        timeZone,
        weekday: "short",
        hour: "2-digit",
        minute: "2-digit",
        hourCycle: "h23",
      });
    } catch {
      throw new InvalidArgumentError(`Unknown time zone "${timeZone}"`);
    }
    this.#spans = specs.flatMap((w, i) => spansOf(w, i));
  }

  /** True when there are no windows: the cycle may run at any time. */
  get isAlwaysOpen(): boolean {
    return this.#spans.length === 0;
  }

  /** The minute of the local week (0 = Monday 00:00) at `ms`. */
  minuteOfWeek(ms: number): number {
    const parts = this.#format.formatToParts(new Date(ms));
    const get = (t: string) => parts.find((p) => p.type === t)?.value ?? "";
    const day = DAY_INDEX[get("weekday").toLowerCase()];
    if (day === undefined) throw new Error(`Unexpected weekday "${get("weekday")}" from Intl`);
    return day * 1440 + Number(get("hour")) * 60 + Number(get("minute"));
  }

  isOpen(ms: number): boolean {
    if (this.isAlwaysOpen) return true;
    const m = this.minuteOfWeek(ms);
    return this.#spans.some((s) => (m >= s.start && m < s.end) || m + WEEK_MINUTES < s.end);
  }

  /**
   * When a window is next open, at or after `ms` (to the minute); `ms` itself
   * when one is open now. Null never happens for valid windows (each opens
   * every week); it is kept for the check at start.
   */
  nextOpen(ms: number): number | null {
    if (this.isOpen(ms)) return ms;
    // Whole minutes from the next minute's start; a week and a day covers any daylight-saving shift.
    let t = Math.floor(ms / 60_000) * 60_000 + 60_000;
    for (let i = 0; i < WEEK_MINUTES + 1440; i++, t += 60_000) if (this.isOpen(t)) return t;
    return null;
  }

  /** When the window open at `ms` closes (to the minute); null when none is open or they never close. */
  closesAt(ms: number): number | null {
    if (this.isAlwaysOpen || !this.isOpen(ms)) return null;
    let t = Math.floor(ms / 60_000) * 60_000 + 60_000;
    for (let i = 0; i < WEEK_MINUTES + 1440; i++, t += 60_000) if (!this.isOpen(t)) return t;
    return null;
  }

  /** Throws unless some window opens within the next eight days from `ms`. */
  assertOpens(ms: number): void {
    if (this.nextOpen(ms) === null) throw new InvalidArgumentError(`No update window ever opens (time zone "${this.timeZone}")`);
  }
}

function spansOf(w: WindowSpec, i: number): Span[] {
  const where = `policy.window[${i}]`;
  if (w.days.length === 0) throw new InvalidArgumentError(`${where} has no days: it would never open`);
  if (!Number.isInteger(w.length_minutes) || w.length_minutes < 1)
    throw new InvalidArgumentError(`${where}.length_minutes = ${JSON.stringify(w.length_minutes)}: a window of no length never opens`);
  if (w.length_minutes > WEEK_MINUTES) throw new InvalidArgumentError(`${where}.length_minutes = ${w.length_minutes}: at most a week (${WEEK_MINUTES})`);
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(w.start_time);
  if (!m) throw new InvalidArgumentError(`${where}.start_time = "${w.start_time}": expected HH:MM, like 22:30`);
  const start = Number(m[1]) * 60 + Number(m[2]);
  return w.days.map((d) => {
    const day = DAY_INDEX[d.toLowerCase().slice(0, 3)];
    if (day === undefined || !(d.length === 3 || FULL_NAMES.includes(d.toLowerCase())))
      throw new InvalidArgumentError(`${where}.days: unknown day "${d}" (expected Mon..Sun or Monday..Sunday)`);
    const s = day * 1440 + start;
    return { start: s, end: s + w.length_minutes };
  });
}

const FULL_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
