import { expect, test } from "bun:test";
import { runningBeforeAnswerMs } from "./peer.ts";

test("the destination's copy ran for the phases after its unlock; none said (an older destination, or pre-copy): 0", () => {
  expect(runningBeforeAnswerMs({ check: 10, criu: 60, continue: 12, unlock: 13, resume: 7.5, answer: 20 })).toBe(27.5);
  expect(runningBeforeAnswerMs({ check: 10, criu: 60, verify: 3 })).toBe(0);
  expect(runningBeforeAnswerMs({ unlock: 13 })).toBe(0);
  expect(runningBeforeAnswerMs({ unlock: 13, answer: -5, resume: 4 })).toBe(4);
});
