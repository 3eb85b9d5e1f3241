import { expect, test } from "bun:test";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { resolveRestoreRef } from "./restore-ref.ts";

const A = `abcd${"1".repeat(60)}`;
const B = `abcd${"2".repeat(60)}`;
const C = `cafe${"3".repeat(60)}`;
/** Images: web's are A (older) then C (latest); "cafe" has none of its own... until it has. */
function catalogue(latest: Record<string, string>) {
  const ids = [A, B, C];
  return {
    idsStartingWith: (p: string) => ids.filter((i) => i.startsWith(p)),
    latestOf: (pod: string) => latest[pod] ?? null,
  };
}

function err(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("no error");
}

test("a pod name restores that pod's latest image", () => {
  expect(resolveRestoreRef(catalogue({ web: C }), "web")).toBe(C);
});

test("an image id or a unique prefix works as before; an ambiguous prefix names the candidates", () => {
  const cat = catalogue({ web: C });
  expect(resolveRestoreRef(cat, A)).toBe(A);
  expect(resolveRestoreRef(cat, "abcd1")).toBe(A);
  const e = err(() => resolveRestoreRef(cat, "abcd"));
  expect(e).toBeInstanceOf(InvalidArgumentError);
  expect(e.message).toBe(`Image id "abcd" is ambiguous: ${A.slice(0, 12)}, ${B.slice(0, 12)}`);
});

test("a string that is both a pod with images and an image prefix is refused, naming both, asking for --image", () => {
  const e = err(() => resolveRestoreRef(catalogue({ cafe: A }), "cafe"));
  expect(e).toBeInstanceOf(InvalidArgumentError);
  expect(e.message).toBe(
    `"cafe" is both pod "cafe" (its latest image is ${A.slice(0, 12)}) and the start of image id ${C.slice(0, 12)}: say which with --image ID`,
  );
  // The same image both ways is no ambiguity.
  expect(resolveRestoreRef(catalogue({ cafe: C }), "cafe")).toBe(C);
});

test("neither an image nor a pod with one: not found; neither shape: invalid", () => {
  const cat = catalogue({ web: C });
  expect(err(() => resolveRestoreRef(cat, "db"))).toBeInstanceOf(NotFoundError);
  expect(err(() => resolveRestoreRef(cat, "db")).message).toBe('No image of a pod named "db": see `autopod images`');
  expect(err(() => resolveRestoreRef(cat, "beef")).message).toBe(
    'No image "beef" (no image id starts with it, and no pod of that name has one): see `autopod images`',
  );
  expect(err(() => resolveRestoreRef(cat, "b".repeat(64))).message).toBe(`No image "${"b".repeat(64)}": see \`autopod images\``);
  const bad = err(() => resolveRestoreRef(cat, "../etc"));
  expect(bad).toBeInstanceOf(InvalidArgumentError);
  expect(bad.message).toBe('"../etc" is neither an image id (4 to 64 hex digits) nor a pod name');
});
