import { expect, test } from "bun:test";
import { join } from "node:path";

/** Every module a file pulls in, dynamic imports included (what the bundler follows). */
async function moduleGraph(entry: string): Promise<string[]> {
  const r = await Bun.build({ entrypoints: [join(import.meta.dir, entry)], target: "bun", metafile: true });
  if (!r.success) throw new Error(r.logs.join("\n"));
  return Object.keys(r.metafile!.inputs);
}

// `autopod run` is on the path of every pod start: its client must start at once, so it loads neither
// the config schema (zod) nor the agent's side (the API routes, the store, msgpackr's native addon).
test("the CLI's run command and its socket lookup load no zod, msgpackr, hono or agent code", async () => {
  for (const entry of ["run.ts", "_client.ts", "../config/socket.ts"]) {
    const heavy = (await moduleGraph(entry)).filter((m) => /node_modules\/(zod|msgpackr|hono)\/|src\/(store|checkpoint|agent|platform)\//.test(m));
    expect({ entry, heavy }).toEqual({ entry, heavy: [] });
  }
});
