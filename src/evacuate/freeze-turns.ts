/**
 * Turns for the migrations of one evacuation: pre-copy rounds share, a freeze
 * is alone. A pod's freeze (final dump, delta, the peer's restore, commit) is
 * its downtime, and on a host of few cores it stretches with every other
 * dump that runs beside it; rounds, while the pods run, may overlap freely.
 * So a freeze waits for the rounds under way to end, and no round starts
 * while a freeze waits or runs (freezes go first), and freezes go one at a
 * time: each pod's downtime stays near what it is when it moves alone, while
 * the rounds of the others fill the link between freezes.
 */
export type Release = () => void;

export class FreezeTurns {
  #rounds = 0;
  #isFrozen = false;
  #freezers: Array<() => void> = [];
  #rounders: Array<() => void> = [];

  /** A pre-copy round's turn: shared with other rounds, never beside a freeze. */
  async round(): Promise<Release> {
    if (this.#isFrozen || this.#freezers.length) await new Promise<void>((r) => this.#rounders.push(r));
    else this.#rounds++;
    return this.#once(() => {
      this.#rounds--;
      this.#next();
    });
  }

  /** A freeze's turn: alone. */
  async freeze(): Promise<Release> {
    if (this.#isFrozen || this.#rounds > 0 || this.#freezers.length) await new Promise<void>((r) => this.#freezers.push(r));
    else this.#isFrozen = true;
    return this.#once(() => {
      this.#isFrozen = false;
      this.#next();
    });
  }

  /** Freezes first; when none waits, every waiting round at once. */
  #next(): void {
    if (this.#isFrozen) return;
    if (this.#freezers.length) {
      if (this.#rounds > 0) return;
      this.#isFrozen = true;
      this.#freezers.shift()!();
      return;
    }
    const waiting = this.#rounders.splice(0);
    this.#rounds += waiting.length;
    for (const r of waiting) r();
  }

  #once(f: () => void): Release {
    let isDone = false;
    return () => {
      if (isDone) return;
      isDone = true;
      f();
    };
  }
}
