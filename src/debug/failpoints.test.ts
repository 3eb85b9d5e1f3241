import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError, PreconditionError } from "../errors.ts";
import {
  areFailpointsEnabled,
  clearFailpoint,
  corrupts,
  enableFailpoints,
  FAILPOINTS,
  FailpointError,
  failpoint,
  listFailpoints,
  parseFailpointSpec,
  resetFailpoints,
  setFailpoint,
} from "./failpoints.ts";

afterEach(() => resetFailpoints());

/** Whether a possibly-async point throws, and what. */
async function outcome(p: () => void | Promise<void>): Promise<string> {
  try {
    await p();
    return "ok";
  } catch (e) {
    return e instanceof FailpointError ? `error: ${e.message}` : `other: ${String(e)}`;
  }
}

describe("failpoint", () => {
  test("does nothing, synchronously, when no point is set", () => {
    expect(failpoint("checkpoint.dumped")).toBeUndefined();
    expect(areFailpointsEnabled()).toBe(false);
  });

  test("cannot be set unless failpoints were enabled", () => {
    expect(() => setFailpoint("checkpoint.dumped", "kill")).toThrow(PreconditionError);
    enableFailpoints("");
    expect(areFailpointsEnabled()).toBe(true);
    setFailpoint("checkpoint.dumped", "error(boom)");
    expect(() => failpoint("checkpoint.dumped")).toThrow('boom (failpoint "checkpoint.dumped")');
  });

  test("error throws a domain error naming the point; only the point that was set fails", async () => {
    enableFailpoints("checkpoint.committed=error(No space left on device)");
    expect(await outcome(() => failpoint("checkpoint.dumped"))).toBe("ok");
    expect(await outcome(() => failpoint("checkpoint.committed"))).toBe('error: No space left on device (failpoint "checkpoint.committed")');
    try {
      failpoint("checkpoint.committed");
    } catch (e) {
      expect(e).toBeInstanceOf(FailpointError);
      expect((e as FailpointError).point).toBe("checkpoint.committed");
      expect((e as FailpointError).code).toBe("internal");
    }
    expect(await outcome(() => failpoint("checkpoint.committed"))).toStartWith("error: No space");
  });

  test("counts: 1*error fails the first hit only; 2*off->error fails from the third on", async () => {
    enableFailpoints("restore.criu-done=1*error;import.committed=2*off->error(third)");
    expect(await outcome(() => failpoint("restore.criu-done"))).toStartWith("error: Injected failure");
    expect(await outcome(() => failpoint("restore.criu-done"))).toBe("ok");
    expect(await outcome(() => failpoint("restore.criu-done"))).toBe("ok");
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push(await outcome(() => failpoint("import.committed")));
    expect(seen).toEqual(["ok", "ok", 'error: third (failpoint "import.committed")', 'error: third (failpoint "import.committed")']);
    expect(listFailpoints().find((p) => p.name === "import.committed")).toEqual({
      name: "import.committed",
      doc: FAILPOINTS["import.committed"].doc,
      actions: "2*off->error(third)",
      hits: 4,
    });
  });

  test("sleep waits about that long", async () => {
    enableFailpoints("checkpoint.started=sleep(60)");
    const t = performance.now();
    await failpoint("checkpoint.started");
    expect(performance.now() - t).toBeGreaterThanOrEqual(55);
  });

  test("pause waits until the point is set again", async () => {
    enableFailpoints("restore.verified=pause");
    let isPast = false;
    const p = (failpoint("restore.verified") as Promise<void>).then(() => {
      isPast = true;
    });
    await Bun.sleep(50);
    expect(isPast).toBe(false);
    expect(listFailpoints().find((x) => x.name === "restore.verified")?.hits).toBe(1);
    clearFailpoint("restore.verified");
    await p;
    expect(isPast).toBe(true);
    expect(failpoint("restore.verified")).toBeUndefined();
  });

  test("pause(FILE) waits until the file exists", async () => {
    const dir = mkdtempSync(join(tmpdir(), "failpoint-"));
    try {
      const file = join(dir, "go");
      enableFailpoints(`checkpoint.files-stored=pause(${file})`);
      let isPast = false;
      const p = (failpoint("checkpoint.files-stored") as Promise<void>).then(() => {
        isPast = true;
      });
      await Bun.sleep(60);
      expect(isPast).toBe(false);
      writeFileSync(file, "");
      await p;
      expect(isPast).toBe(true);
      // Already there: no wait.
      await failpoint("checkpoint.files-stored");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("kill SIGKILLs the process there and then", async () => {
    const script = [
      `import { enableFailpoints, failpoint } from ${JSON.stringify(join(import.meta.dir, "failpoints.ts"))};`,
      `enableFailpoints("checkpoint.dumped=kill");`,
      `console.log("before");`,
      `await failpoint("checkpoint.dumped");`,
      `console.log("after");`,
    ].join("\n");
    const dir = mkdtempSync(join(tmpdir(), "failpoint-"));
    try {
      writeFileSync(join(dir, "kill.ts"), script);
      const p = Bun.spawn([process.execPath, join(dir, "kill.ts")], { stdout: "pipe", stderr: "pipe" });
      const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      expect(out).toBe("before\n");
      expect(p.signalCode).toBe("SIGKILL");
      expect(err).toContain('failpoint "checkpoint.dumped": the agent kills itself');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("corruption points", () => {
  test("say false unless set, then corrupt the hits their count says", () => {
    expect(corrupts("export.chunk-framed")).toBe(false);
    enableFailpoints("export.chunk-framed=2*off->1*corrupt");
    expect([1, 2, 3, 4].map(() => corrupts("export.chunk-framed"))).toEqual([false, false, true, false]);
    expect(listFailpoints().find((p) => p.name === "export.chunk-framed")?.hits).toBe(4);
  });
});

describe("failpoint specs", () => {
  test("parse into checked pairs", () => {
    expect(parseFailpointSpec(" checkpoint.dumped = kill ; restore.prepared=1*sleep(10)->error(x y) ;")).toEqual([
      ["checkpoint.dumped", "kill"],
      ["restore.prepared", "1*sleep(10)->error(x y)"],
    ]);
    expect(parseFailpointSpec("")).toEqual([]);
  });

  test.each([
    ["checkpoint.dumpd=kill", 'No failpoint "checkpoint.dumpd": did you mean one of checkpoint.started'],
    ["nothing.here=kill", 'No failpoint "nothing.here": the points are checkpoint.started'],
    ["checkpoint.dumped", 'Failpoint "checkpoint.dumped" has no actions'],
    ["checkpoint.dumped=explode", 'Unknown failpoint action "explode" of "checkpoint.dumped"'],
    ["checkpoint.dumped=sleep(soon)", 'Failpoint action "sleep" of "checkpoint.dumped" needs milliseconds'],
    ["checkpoint.dumped=sleep", 'Failpoint action "sleep" of "checkpoint.dumped" needs milliseconds'],
    ["checkpoint.dumped=kill(now)", 'Failpoint action "kill" of "checkpoint.dumped" takes no argument (got "now")'],
    ["checkpoint.dumped=pause(relative/file)", 'needs an absolute path (got "relative/file")'],
    ["checkpoint.dumped=*kill", 'Cannot parse failpoint action "*kill"'],
    ["checkpoint.criu-started=pause", 'Failpoint "checkpoint.criu-started" is hit while CRIU runs, in synchronous code: it can only kill, not pause'],
    ["restore.criu-started=sleep(5)", "it can only kill, not sleep"],
    ["restore.criu-started=error(x)", "it can only kill, not error"],
    ["checkpoint.dumped=corrupt", 'Failpoint action "corrupt" of "checkpoint.dumped": only a point that handles data (export.chunk-framed) can corrupt'],
    ["export.chunk-framed=kill", 'Failpoint "export.chunk-framed" alters data: it can only corrupt, not kill'],
    ["export.chunk-framed=corrupt(x)", 'Failpoint action "corrupt" of "export.chunk-framed" takes no argument'],
  ])("refuse %p", (spec, message) => {
    expect(() => parseFailpointSpec(spec)).toThrow(InvalidArgumentError);
    expect(() => parseFailpointSpec(spec)).toThrow(message);
  });

  test("a bad spec enables nothing", () => {
    expect(() => enableFailpoints("checkpoint.dumped=kill;restore.nope=kill")).toThrow(InvalidArgumentError);
    expect(areFailpointsEnabled()).toBe(false);
    expect(listFailpoints().every((p) => p.actions === null)).toBe(true);
  });

  test("every point is named phase.step in lower case", () => {
    for (const name of Object.keys(FAILPOINTS)) expect(name).toMatch(/^[a-z]+\.[a-z-]+$/);
  });
});
