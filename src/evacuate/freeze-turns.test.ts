import { describe, expect, test } from "bun:test";
import { FreezeTurns } from "./freeze-turns.ts";

const tick = () => new Promise((r) => setTimeout(r, 1));

describe("FreezeTurns", () => {
  test("rounds share; a freeze waits for them, and rounds asked meanwhile wait for the freeze", async () => {
    const t = new FreezeTurns();
    const log: string[] = [];
    const r1 = await t.round();
    const r2 = await t.round();
    const f = t.freeze().then((rel) => {
      log.push("freeze");
      return rel;
    });
    const r3 = t.round().then((rel) => {
      log.push("round3");
      return rel;
    });
    await tick();
    expect(log).toEqual([]);
    r1();
    await tick();
    expect(log).toEqual([]);
    r2();
    const fr = await f;
    await tick();
    expect(log).toEqual(["freeze"]);
    fr();
    (await r3)();
    expect(log).toEqual(["freeze", "round3"]);
  });

  test("freezes go one at a time, in order", async () => {
    const t = new FreezeTurns();
    const log: string[] = [];
    const f1 = await t.freeze();
    const f2 = t.freeze().then((rel) => {
      log.push("f2");
      return rel;
    });
    const f3 = t.freeze().then((rel) => {
      log.push("f3");
      return rel;
    });
    await tick();
    expect(log).toEqual([]);
    f1();
    const r2 = await f2;
    await tick();
    expect(log).toEqual(["f2"]);
    r2();
    r2(); // a second release is a no-op
    (await f3)();
    expect(log).toEqual(["f2", "f3"]);
    // Free again: a round gets its turn at once.
    (await t.round())();
  });

  test("a release called twice frees one turn (post-copy releases its freeze early, and again at the end)", async () => {
    const t = new FreezeTurns();
    const log: string[] = [];
    const f1 = await t.freeze();
    const f2 = t.freeze().then((rel) => {
      log.push("f2");
      return rel;
    });
    const f3 = t.freeze().then((rel) => {
      log.push("f3");
      return rel;
    });
    f1();
    f1();
    await tick();
    expect(log).toEqual(["f2"]);
    (await f2)();
    await tick();
    expect(log).toEqual(["f2", "f3"]);
    (await f3)();
  });
});
