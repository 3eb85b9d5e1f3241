/** Where an operation's time went: named consecutive spans, in milliseconds to a tenth. */

/** Named consecutive spans of time: phase(name) closes the span since the last one (or `endsBefore` ms before now). */
export function phaseClock(start: number): PhaseClock {
  let mark = start;
  const all: Record<string, number> = {};
  const phase = (name: string, endsBefore = 0) => {
    const now = performance.now() - endsBefore;
    all[name] = round(now - mark);
    mark = now;
  };
  return Object.assign(phase, { all });
}

export type PhaseClock = ((name: string, endsBefore?: number) => void) & { all: Record<string, number> };

export function round(x: number): number {
  return Math.round(x * 10) / 10;
}
