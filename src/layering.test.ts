/**
 * The shape of src/: no import cycle between its top-level folders (tests
 * included), and no file imports another folder's private `_` file.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";

const SRC = import.meta.dir;

/**
 * Cycles known when this test was written, each with why it is left: a new
 * cycle fails the test, and so does one of these once it is gone (remove it here).
 */
const KNOWN_CYCLES: Record<string, string> = {
  "platform>pods>platform":
    "platform/pod-host.ts (the PodHost interface) and platform/linux/ use the pod spec types of pods/pod.ts, and pods/ uses PodHost; to cut, move the interface to pods/ or the spec types to a folder below both",
};

/** Relative specifiers of `import ... from`, `export ... from`, `import()` and `new URL(..., import.meta.url)`. */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(?\s*|new URL\(\s*)(["'])(\.{1,2}\/[^"']+)\1/g;
  for (const m of source.matchAll(re)) out.push(m[2]!);
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.tsx?$/.test(e.name)) out.push(p);
  }
  return out;
}

/** The top-level part of src/ a path is in: its folder, or the file itself for files at the top. */
function partOf(file: string): string {
  return path.relative(SRC, file).split(path.sep)[0]!;
}

interface Edge {
  from: string;
  to: string;
  file: string;
  spec: string;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of sourceFiles(SRC)) {
    for (const spec of importsOf(fs.readFileSync(file, "utf8"))) {
      const target = path.resolve(path.dirname(file), spec);
      if (!target.startsWith(SRC + path.sep)) continue;
      out.push({ from: file, to: target, file: path.relative(SRC, file), spec });
    }
  }
  return out;
}

/** Cycles among parts (each as a path a -> b -> ... -> a), found by depth-first search: none when there are none. */
export function cyclesOf(graph: Map<string, Set<string>>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, "open");
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === "open") {
        // Rotated to start at its least name, so that a cycle reads the same whichever node the search met first.
        const ring = stack.slice(stack.indexOf(m));
        const start = ring.indexOf([...ring].sort()[0]!);
        const rotated = [...ring.slice(start), ...ring.slice(0, start)];
        cycles.push([...rotated, rotated[0]!]);
      } else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

describe("src/ layering", () => {
  test("importsOf finds static, dynamic and worker imports", () => {
    const src = `import a from "./a.ts";\nexport { b } from "../b/b.ts";\nconst c = await import("./c.ts");\nnew Worker(new URL("./w.ts", import.meta.url));\nimport x from "zod";`;
    expect(importsOf(src)).toEqual(["./a.ts", "../b/b.ts", "./c.ts", "./w.ts"]);
  });

  test("cyclesOf finds a cycle and only a cycle", () => {
    const g = (pairs: string[]) => {
      const m = new Map<string, Set<string>>();
      for (const p of pairs) {
        const [a, b] = p.split(">") as [string, string];
        if (!m.has(a)) m.set(a, new Set());
        m.get(a)!.add(b);
      }
      return m;
    };
    expect(cyclesOf(g(["a>b", "b>c", "a>c"]))).toEqual([]);
    expect(cyclesOf(g(["a>b", "b>c", "c>a"]))).toEqual([["a", "b", "c", "a"]]);
    expect(cyclesOf(g(["a>c", "c>b", "b>c"]))).toEqual([["b", "c", "b"]]);
  });

  test("no import cycle between top-level folders", () => {
    const graph = new Map<string, Set<string>>();
    const why = new Map<string, string>();
    for (const e of edges()) {
      const a = partOf(e.from);
      const b = partOf(e.to);
      if (a === b) continue;
      if (!graph.has(a)) graph.set(a, new Set());
      graph.get(a)!.add(b);
      if (!why.has(`${a}>${b}`)) why.set(`${a}>${b}`, `${e.file} imports "${e.spec}"`);
    }
    const cycles = cyclesOf(graph);
    const keys = cycles.map((c) => c.join(">"));
    expect(Object.keys(KNOWN_CYCLES).filter((k) => !keys.includes(k))).toEqual([]);
    const described = cycles
      .filter((c) => !(c.join(">") in KNOWN_CYCLES))
      .map((c) =>
        c
          .slice(1)
          .map((to, i) => `${c[i]} -> ${to} (${why.get(`${c[i]}>${to}`)})`)
          .join("; "),
      );
    expect(described).toEqual([]);
  });

  test("no file imports another folder's private _ file", () => {
    const bad = edges()
      .filter((e) => path.basename(e.to).startsWith("_") && path.dirname(e.to) !== path.dirname(e.from))
      .map((e) => `${e.file} imports "${e.spec}"`);
    expect(bad).toEqual([]);
  });
});
