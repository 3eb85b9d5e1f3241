import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ChunkWorkers } from "../store/chunk-workers.ts";
import { PAGE_SIZE } from "../image/manifest.ts";
import { PageTail } from "./page-tail.ts";

let dir: string;
const workers = new ChunkWorkers(2);
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "page-tail-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
afterAll(() => workers.close());

/** Random pages, every fifth one zero (as in a real dump). */
function pages(n: number): Uint8Array {
  const b = new Uint8Array(n * PAGE_SIZE);
  for (let i = 0; i < b.length; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(b.length, i + 65536)));
  for (let p = 0; p < n; p += 5) b.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
  return b;
}

/** Append `data` to `file` in steps, as CRIU writes a task's pages, yielding between them. */
async function appendSlowly(file: string, data: Uint8Array, step = 256 << 10, pauseMs = 10): Promise<void> {
  const fd = fs.openSync(file, "a");
  try {
    for (let off = 0; off < data.length; off += step) {
      fs.writeSync(fd, data, off, Math.min(step, data.length - off));
      await Bun.sleep(pauseMs);
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await Bun.sleep(5);
}

describe("PageTail", () => {
  test("hashes page images while they are appended to, and its results equal hashing the files after", async () => {
    const tail = new PageTail(dir, { workers, isOn: true });
    expect(tail.isOn).toBe(true);
    const a = pages(1500); // about 6 MiB: several hashing blocks
    const b = pages(700);
    // A task's pages, then the next task's (CRIU writes one image after another); other images are not page images.
    fs.writeFileSync(path.join(dir, "pagemap-1.img"), "not pages");
    await appendSlowly(path.join(dir, "pages-1.img"), a);
    // Hashed while the "dump" goes on: before finish(), whole blocks are done.
    await waitFor(() => tail.hashedBytes >= 4 << 20);
    expect(tail.hashedBytes).toBeGreaterThanOrEqual(4 << 20);
    const during = appendSlowly(path.join(dir, "pages-2.img"), b);
    await during;
    fs.writeFileSync(path.join(dir, "pages-3.img"), ""); // an empty one, found only by the last look
    expect(tail.hashedBytes).toBeLessThanOrEqual(a.length + b.length);
    const results = tail.finish();
    expect([...results.keys()].sort()).toEqual(["pages-1.img", "pages-2.img", "pages-3.img"]);
    expect(tail.files).toBe(3);
    for (const [name, pending] of results) {
      const got = await pending;
      const after = await workers.hashFile(path.join(dir, name), PAGE_SIZE);
      expect(got.size).toBe(fs.statSync(path.join(dir, name)).size);
      expect(got.chunkSize).toBe(PAGE_SIZE);
      expect(Buffer.compare(got.hashes, after.hashes)).toBe(0);
      expect(Buffer.compare(got.zero, after.zero)).toBe(0);
    }
    expect((await results.get("pages-1.img")!).size).toBe(a.length);
    expect((await results.get("pages-2.img")!).size).toBe(b.length);
    expect((await results.get("pages-3.img")!).size).toBe(0);
  });

  test("page images are written ahead to disk by default, and only hashed with isWriteBehindOn false", async () => {
    const counted = (isWriteBehindOn?: boolean) => {
      const calls: string[] = [];
      const spy = new Proxy(workers, {
        get(target, prop) {
          if (prop === "writeBehind") {
            return (file: string) => {
              calls.push(path.basename(file));
              return target.writeBehind(file);
            };
          }
          const v = Reflect.get(target, prop, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
      return { calls, tail: new PageTail(dir, { workers: spy, isOn: true, ...(isWriteBehindOn === undefined ? {} : { isWriteBehindOn }) }) };
    };
    const ahead = counted();
    fs.writeFileSync(path.join(dir, "pages-1.img"), pages(10));
    const r1 = ahead.tail.finish();
    expect(ahead.calls).toEqual(["pages-1.img"]);
    await r1.get("pages-1.img");
    fs.rmSync(path.join(dir, "pages-1.img"));
    const hashOnly = counted(false);
    const data = pages(10);
    fs.writeFileSync(path.join(dir, "pages-1.img"), data);
    const r2 = hashOnly.tail.finish();
    expect(hashOnly.calls).toEqual([]);
    expect((await r2.get("pages-1.img")!).size).toBe(data.length);
  });

  test("a file's end is where it is when finish() is called, not where it was last seen", async () => {
    const tail = new PageTail(dir, { workers, isOn: true });
    const f = path.join(dir, "pages-7.img");
    const first = pages(300);
    fs.writeFileSync(f, first);
    await waitFor(() => tail.files === 1);
    // The last pages land just before CRIU exits, a short block the tail has not seen complete.
    const last = pages(3);
    fs.appendFileSync(f, last);
    const got = await tail.finish().get("pages-7.img")!;
    expect(got.size).toBe(first.length + last.length);
    expect(Buffer.compare(got.hashes, (await workers.hashFile(f, PAGE_SIZE)).hashes)).toBe(0);
  });

  test("abort() (CRIU failed) rejects the results it had started", async () => {
    const tail = new PageTail(dir, { workers, isOn: true });
    const f = path.join(dir, "pages-1.img");
    fs.writeFileSync(f, pages(10));
    await waitFor(() => tail.files === 1);
    tail.abort();
    // Nothing is handed over after an abort, and a late finish() yields a rejected result.
    const late = tail.finish().get("pages-1.img");
    expect(late).toBeDefined();
    expect(
      await late!.then(
        () => "resolved",
        (e: Error) => e.message,
      ),
    ).toContain("the dump did not finish");
  });

  test("off (a --leave-running checkpoint, or checkpoint.page_tail = false), it hashes nothing and hands over nothing", async () => {
    const tail = new PageTail(dir, { workers, isOn: false });
    expect(tail.isOn).toBe(false);
    fs.writeFileSync(path.join(dir, "pages-1.img"), pages(400));
    await Bun.sleep(100);
    expect(tail.hashedBytes).toBe(0);
    expect(tail.finish().size).toBe(0);
  });
});
