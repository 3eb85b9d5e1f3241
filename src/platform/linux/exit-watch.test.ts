import { afterEach, expect, test } from "bun:test";
import { ExitWatch } from "./exit-watch.ts";

let watch: ExitWatch | null = null;
afterEach(() => {
  watch?.close();
  watch = null;
});

/** Resolves on the next onExit, or with "timeout". */
function nextExit(ms: number): { watch: ExitWatch; fired: () => Promise<"exit" | "timeout"> } {
  let resolve: ((v: "exit") => void) | null = null;
  const w = new ExitWatch(() => resolve?.("exit"));
  return {
    watch: w,
    fired: () =>
      Promise.race([new Promise<"exit">((r) => (resolve = r)), Bun.sleep(ms).then(() => "timeout" as const)]).finally(() => {
        resolve = null;
      }),
  };
}

test("a watched process that exits wakes the watch; one not watched does not", async () => {
  const { watch: w, fired } = nextExit(3000);
  watch = w;
  const watched = Bun.spawn(["sleep", "30"]);
  const other = Bun.spawn(["sleep", "30"]);
  w.watch([watched.pid]);
  expect(w.watched).toEqual([watched.pid]);

  const quiet = fired();
  other.kill("SIGKILL");
  await other.exited;
  expect(await quiet).toBe("timeout");

  const loud = fired();
  const t0 = performance.now();
  watched.kill("SIGKILL");
  expect(await loud).toBe("exit");
  expect(performance.now() - t0).toBeLessThan(1000);

  // Re-armed while the pidfd is still watched and readable, it fires again; dropped, it does not.
  const again = fired();
  w.rearm();
  expect(await again).toBe("exit");
  w.watch([]);
  expect(w.watched).toEqual([]);
  const none = fired();
  w.rearm();
  expect(await none).toBe("timeout");
}, 20_000);

test("a pid that is not running is skipped", () => {
  watch = new ExitWatch(() => {});
  watch.watch([2 ** 22 + 12345]);
  expect(watch.watched).toEqual([]);
});
