/**
 * The image routes' progress streams in-process: a checkpoint and a gc answer
 * plain JSON as before, and NDJSON progress then the same result when asked
 * with ?progress=true.
 */
import { expect, test } from "bun:test";
import { Hono } from "hono";
import type { Checkpointer } from "../../checkpoint/checkpointer.ts";
import type { OnProgress, Progress } from "../../progress.ts";
import type { ImageCatalogue } from "../../store/image-catalogue.ts";
import type { ImageTrust } from "../../trust/image-trust.ts";
import { addImageRoutes } from "./image-routes.ts";
import { PROGRESS_CONTENT_TYPE, readProgressStream } from "./progress-stream.ts";

const RESULT = { id: "ab".repeat(32), pod: "web" };
const GC = { removedChunks: 3 };

function app(): Hono {
  const a = new Hono();
  const checkpointer = {
    async checkpoint(_name: string, _req: unknown, on?: OnProgress) {
      on?.({ phase: "dumping", bytes: 4096, totalBytes: null });
      on?.({ phase: "storing memory", bytes: 8192, totalBytes: 16384 });
      return RESULT;
    },
  } as unknown as Checkpointer;
  const catalogue = {
    async gcYielding(_y: () => Promise<void>, on?: OnProgress) {
      on?.({ phase: "collecting", bytes: 0, totalBytes: null });
      return GC;
    },
  } as unknown as ImageCatalogue;
  addImageRoutes(a, { checkpointer, catalogue, trust: {} as ImageTrust });
  return a;
}

const post = (path: string) => app().request(path, { method: "POST", body: "{}", headers: { "content-type": "application/json" } });

test("without ?progress the answers are plain JSON, as before", async () => {
  const cp = await post("/v1/pods/web/checkpoint");
  expect(cp.headers.get("content-type")).toContain("application/json");
  expect(await cp.json()).toEqual({ checkpoint: RESULT });
  expect(await (await post("/v1/images/gc")).json()).toEqual({ gc: GC });
});

test("with ?progress=true a checkpoint and a gc stream their phases, then the same result", async () => {
  const cp = await post("/v1/pods/web/checkpoint?progress=true");
  expect(cp.headers.get("content-type")).toBe(PROGRESS_CONTENT_TYPE);
  const seen: Progress[] = [];
  expect(await readProgressStream(cp.body!, (p) => seen.push(p))).toEqual(RESULT);
  expect(seen.map((p) => p.phase)).toEqual(["dumping", "storing memory"]);
  expect(seen[1]).toEqual({ phase: "storing memory", bytes: 8192, totalBytes: 16384 });
  const phases: string[] = [];
  expect(await readProgressStream((await post("/v1/images/gc?progress=true")).body!, (p) => phases.push(p.phase))).toEqual(GC);
  expect(phases).toEqual(["collecting"]);
});
