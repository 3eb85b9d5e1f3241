import { expect, test } from "bun:test";
import { quote } from "./quote.ts";

test("a short value is quoted whole, escaped", () => {
  expect(quote("web-1")).toBe('"web-1"');
  expect(quote('a"b\x1b[2J')).toBe('"a\\"b\\u001b[2J"');
});

test("a long value is cut to its first 100 characters, with an ellipsis and its whole length", () => {
  const q = quote("y/".repeat(2100));
  expect(q).toBe(`"${"y/".repeat(50)}…" (4,200 characters)`);
  expect(quote("é".repeat(101), 100)).toBe(`"${"é".repeat(100)}…" (101 characters)`);
  expect(quote("x".repeat(100))).toBe(`"${"x".repeat(100)}"`);
});
