import { describe, expect, test } from "bun:test";
import { UpdateWindows } from "./window.ts";

const at = (iso: string) => Date.parse(iso);

describe("UpdateWindows", () => {
  test("no windows: always open", () => {
    const w = new UpdateWindows([]);
    expect(w.isOpen(at("2026-11-30T12:00:00Z"))).toBe(true);
  });

  test("open inside, closed outside, start inclusive and end exclusive (UTC)", () => {
    // 2026-11-30 is a Monday.
    const w = new UpdateWindows([{ days: ["Mon"], start_time: "10:00", length_minutes: 30 }]);
    expect(w.isOpen(at("2026-11-30T09:59:59Z"))).toBe(false);
    expect(w.isOpen(at("2026-11-30T10:00:00Z"))).toBe(true);
    expect(w.isOpen(at("2026-11-30T10:29:59Z"))).toBe(true);
    expect(w.isOpen(at("2026-11-30T10:30:00Z"))).toBe(false);
    expect(w.isOpen(at("2026-12-01T10:10:00Z"))).toBe(false); // Tuesday
    expect(w.nextOpen(at("2026-11-30T10:30:00Z"))).toBe(at("2026-12-07T10:00:00Z"));
    expect(w.closesAt(at("2026-11-30T10:05:00Z"))).toBe(at("2026-11-30T10:30:00Z"));
  });

  test("a window past midnight runs into the next day, and Sunday's into Monday", () => {
    const w = new UpdateWindows([{ days: ["Sunday", "wed"], start_time: "23:00", length_minutes: 120 }]);
    expect(w.isOpen(at("2026-12-06T23:30:00Z"))).toBe(true); // Sunday
    expect(w.isOpen(at("2026-12-07T00:59:00Z"))).toBe(true); // Monday, wrapped from Sunday
    expect(w.isOpen(at("2026-12-07T01:00:00Z"))).toBe(false);
    expect(w.isOpen(at("2026-12-03T00:30:00Z"))).toBe(true); // Thursday, from Wednesday
    expect(w.isOpen(at("2026-12-02T00:30:00Z"))).toBe(false); // Wednesday early: Tuesday has none
  });

  test("the time zone decides the day and the hour", () => {
    const w = new UpdateWindows([{ days: ["Mon"], start_time: "01:00", length_minutes: 60 }], "Europe/Berlin");
    // 01:30 in Berlin on Monday 2026-11-30 is 00:30 UTC (CET, +1).
    expect(w.isOpen(at("2026-11-30T00:30:00Z"))).toBe(true);
    expect(w.isOpen(at("2026-11-30T01:30:00Z"))).toBe(false);
    // Sunday 2026-11-29 at 01:30 UTC is Sunday in Berlin too: no window.
    expect(w.isOpen(at("2026-11-29T01:30:00Z"))).toBe(false);
  });

  test("across daylight saving: spring forward shortens a window, autumn back lengthens it", () => {
    // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET. Both Sundays.
    const w = new UpdateWindows([{ days: ["Sun"], start_time: "01:30", length_minutes: 120 }], "Europe/Berlin");
    // Spring: local 01:30..03:30 is 00:30Z..01:30Z (only one real hour: 02:xx does not exist).
    expect(w.isOpen(at("2026-03-29T00:29:00Z"))).toBe(false);
    expect(w.isOpen(at("2026-03-29T00:30:00Z"))).toBe(true);
    expect(w.isOpen(at("2026-03-29T01:29:00Z"))).toBe(true); // 03:29 CEST
    expect(w.isOpen(at("2026-03-29T01:30:00Z"))).toBe(false); // 03:30 CEST
    // Autumn: local 01:30..03:30 is 23:30Z..02:30Z (three real hours: 02:xx happens twice).
    expect(w.isOpen(at("2026-10-24T23:30:00Z"))).toBe(true); // 01:30 CEST
    expect(w.isOpen(at("2026-10-25T01:15:00Z"))).toBe(true); // 02:15 CET, the second time
    expect(w.isOpen(at("2026-10-25T02:29:00Z"))).toBe(true); // 03:29 CET
    expect(w.isOpen(at("2026-10-25T02:30:00Z"))).toBe(false);
    // nextOpen from the Saturday before spring forward lands on the real start.
    expect(w.nextOpen(at("2026-03-28T12:00:00Z"))).toBe(at("2026-03-29T00:30:00Z"));
  });

  test("a window wholly inside the spring-forward gap is skipped that week, and opens the next", () => {
    const w = new UpdateWindows([{ days: ["Sun"], start_time: "02:00", length_minutes: 60 }], "Europe/Berlin");
    expect(w.nextOpen(at("2026-03-28T12:00:00Z"))).toBe(at("2026-04-05T00:00:00Z")); // 02:00 CEST a week later
  });

  test("a window that can never open is an error", () => {
    expect(() => new UpdateWindows([{ days: [], start_time: "10:00", length_minutes: 30 }])).toThrow(/policy\.window\[0\] has no days: it would never open/);
    expect(() => new UpdateWindows([{ days: ["Mon"], start_time: "10:00", length_minutes: 0 }])).toThrow(/a window of no length never opens/);
    expect(() => new UpdateWindows([{ days: ["Mon"], start_time: "25:00", length_minutes: 5 }])).toThrow(/start_time = "25:00"/);
    expect(() => new UpdateWindows([{ days: ["Moonday"], start_time: "10:00", length_minutes: 5 }])).toThrow(/unknown day "Moonday"/);
    expect(() => new UpdateWindows([], "Mars/Olympus")).toThrow(/Unknown time zone "Mars\/Olympus"/);
    const ok = new UpdateWindows([{ days: ["Mon"], start_time: "10:00", length_minutes: 1 }], "America/New_York");
    expect(() => ok.assertOpens(at("2026-11-30T12:00:00Z"))).not.toThrow();
  });

  test("a week-long window is always open", () => {
    const w = new UpdateWindows([{ days: ["Mon"], start_time: "00:00", length_minutes: 10080 }]);
    for (let d = 0; d < 7; d++) expect(w.isOpen(at("2026-11-30T05:00:00Z") + d * 86_400_000)).toBe(true);
  });
});
