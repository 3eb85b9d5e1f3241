/**
 * Progress on long local work: checkpoint (and --export), image export,
 * image import (and restore --import) and image gc draw a progress line on a
 * real pseudo-terminal (`script`), erased before the result; piped, they
 * print only what they printed before the line existed.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { autopodInTerminal, isRoot, rootTest } from "./_support.ts";

const T = 180_000;
let host: TestHost;
const scratch = mkdtempSync(join(tmpdir(), "autopod-progress-"));

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("pg");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** A terminal's output with "erase to the end of the line" made visible, and its "\r\n" as "\n". */
function shown(output: string): string {
  return output.replaceAll("\x1b[K", "<EL>").replaceAll("\r\n", "\n");
}

/** The progress draws of `phase` in a terminal's output: each begins with a carriage return. */
function draws(out: string, phase: string): string[] {
  return out.split("\r").filter((d) => d.startsWith(`${phase}  `) || d.startsWith(`${phase}<EL>`));
}

describe("progress on long work", () => {
  rootTest(
    "checkpoint, export, import and gc draw a line on a terminal and erase it before the result",
    async () => {
      await host.run("big", ["/usr/local/bin/memhog", "128"]);
      await host.waitForLog("big", /ready/);
      const cp = await autopodInTerminal(["checkpoint", "big"], { env: host.env });
      expect(cp.exitCode).toBe(0);
      const cpOut = shown(cp.output);
      expect(draws(cpOut, "dumping").length).toBeGreaterThanOrEqual(1);
      // Of the page images' size, known once CRIU has written them.
      expect(cpOut).toMatch(/\rstoring memory {2}[0-9.]+ [KMG]?i?B of [0-9.]+ MiB \(\d+%\)/);
      // Erased, then the result: the id on its own line, then the summary.
      const id = cpOut.match(/\r<EL>([0-9a-f]{64})\n/)?.[1];
      expect(id).toBeDefined();
      expect(cpOut).toMatch(/\npod "big" is checkpointed; dump [0-9.]+ ms, total [0-9.]+ ms, [0-9.]+ MiB new of [0-9.]+ MiB\n$/);

      const file = join(scratch, "big.export");
      const ex = await autopodInTerminal(["image", "export", id!, file], { env: host.env });
      expect(ex.exitCode).toBe(0);
      const exOut = shown(ex.output);
      expect(draws(exOut, "exporting").length).toBeGreaterThanOrEqual(1);
      // Bytes written of the file's size, which the agent says ahead.
      expect(exOut).toMatch(/exporting {2}[0-9.]+ [KMG]?i?B of [0-9.]+ MiB \(\d+%\)/);
      expect(exOut).toMatch(/\r<EL>exported [0-9.]+ MiB to \S+\n$/);

      await host.ok(["rm", "--force", "big"]);
      await host.ok(["image", "rm", id!]);
      const gc = await autopodInTerminal(["image", "gc"], { env: host.env });
      expect(gc.exitCode).toBe(0);
      const gcOut = shown(gc.output);
      expect(draws(gcOut, "collecting").length).toBe(1);
      expect(gcOut).toMatch(/\r<EL>removed \d+ chunks, freed [0-9.]+ [KMG]?i?B on disk\n$/);

      const im = await autopodInTerminal(["image", "import", file], { env: host.env });
      expect(im.exitCode).toBe(0);
      const imOut = shown(im.output);
      // Bytes of the file's size, known to the CLI.
      const size = statSync(file).size;
      expect(draws(imOut, "importing").length).toBeGreaterThanOrEqual(1);
      expect(imOut).toMatch(/importing {2}[0-9.]+ [KMG]?i?B of [0-9.]+ MiB \(\d+%\)/);
      expect(imOut).toMatch(new RegExp(`\\r<EL>${id}\\n$`));
      expect(size).toBeGreaterThan(100 << 20);

      // restore --import: the import's line, erased before the restore's messages.
      await host.ok(["image", "rm", id!]);
      await host.ok(["image", "gc"]);
      const re = await autopodInTerminal(["restore", "--import", file], { env: host.env });
      expect(re.exitCode).toBe(0);
      const reOut = shown(re.output);
      expect(draws(reOut, "importing").length).toBeGreaterThanOrEqual(1);
      expect(reOut).toMatch(new RegExp(`\\r<EL>imported image ${id} \\(\\d+ new chunks\\)\\n`));
      expect(reOut).toMatch(/pod "big" running again: /);

      // checkpoint --export FILE: both the checkpoint's phases and the export's.
      const both = join(scratch, "both.export");
      const cpx = await autopodInTerminal(["checkpoint", "big", "--leave-running", "--export", both], { env: host.env });
      expect(cpx.exitCode).toBe(0);
      const cpxOut = shown(cpx.output);
      expect(draws(cpxOut, "storing memory").length).toBeGreaterThanOrEqual(1);
      expect(draws(cpxOut, "exporting").length).toBeGreaterThanOrEqual(1);
      expect(cpxOut).toMatch(/\r<EL>[0-9a-f]{64}\n/);
      expect(statSync(both).size).toBeGreaterThan(100 << 20);
    },
    T,
  );

  rootTest(
    "piped or with --json: the result alone, as before",
    async () => {
      await host.run("quiet", ["/usr/local/bin/memhog", "16"]);
      await host.waitForLog("quiet", /ready/);
      const cp = await host.cli(["checkpoint", "quiet", "--leave-running"]);
      expect(cp.exitCode).toBe(0);
      expect(cp.stdout).toMatch(/^[0-9a-f]{64}\n$/);
      expect(cp.stderr).toMatch(/^pod "quiet" keeps running; frozen [0-9.]+ ms, dump [0-9.]+ ms, total [0-9.]+ ms, [0-9.]+ MiB new of [0-9.]+ MiB\n$/);
      const id = cp.stdout.trim();

      const file = join(scratch, "quiet.export");
      const ex = await host.cli(["image", "export", id, file]);
      expect(ex.exitCode).toBe(0);
      expect(ex.stdout).toBe("");
      expect(ex.stderr).toMatch(/^exported [0-9.]+ MiB to \S+\n$/);

      const im = await host.cli(["image", "import", file]);
      expect(im.exitCode).toBe(0);
      expect(im.stdout).toBe(`${id}\n`);
      expect(im.stderr).toBe("");

      const gc = await host.cli(["image", "gc"]);
      expect(gc.exitCode).toBe(0);
      expect(gc.stdout).toMatch(/^removed \d+ chunks, freed [0-9.]+ [KMG]?i?B on disk\n$/);
      expect(gc.stderr).toBe("");

      // --json on a terminal: the JSON alone, no line.
      const json = await autopodInTerminal(["checkpoint", "quiet", "--leave-running", "--json"], { env: host.env });
      expect(json.exitCode).toBe(0);
      expect(json.output).not.toContain("dumping");
      expect(JSON.parse(json.output.replaceAll("\r\n", "\n"))).toMatchObject({ pod: "quiet", leftRunning: true });
      const gcJson = await autopodInTerminal(["image", "gc", "--json"], { env: host.env });
      expect(gcJson.output).not.toContain("collecting");
      expect(JSON.parse(gcJson.output.replaceAll("\r\n", "\n"))).toHaveProperty("removedChunks");
    },
    T,
  );
});
