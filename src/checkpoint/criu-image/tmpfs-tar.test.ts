import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { checkTmpfsTar } from "./tmpfs-tar.ts";

const real = (name: string) => new Uint8Array(readFileSync(`${import.meta.dir}/testdata/${name}`));

/** A one-entry ustar archive, gzipped. */
function tarOf(entries: Array<{ name: string; type: string; link?: string; data?: string }>): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const h = new Uint8Array(512);
    const put = (at: number, s: string) => h.set(new TextEncoder().encode(s), at);
    const data = new TextEncoder().encode(e.data ?? "");
    put(0, e.name);
    put(100, "0000644\0");
    put(108, "0000000\0");
    put(116, "0000000\0");
    put(124, `${data.byteLength.toString(8).padStart(11, "0")}\0`);
    put(136, "00000000000\0");
    put(148, "        ");
    put(156, e.type);
    put(157, e.link ?? "");
    put(257, "ustar\u000000");
    if (e.type === "3" || e.type === "4") put(329, "0000010\0");
    const sum = h.reduce((a, b) => a + b, 0);
    put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
    blocks.push(h);
    if (data.byteLength) {
      const d = new Uint8Array(Math.ceil(data.byteLength / 512) * 512);
      d.set(data);
      blocks.push(d);
    }
  }
  blocks.push(new Uint8Array(1024));
  return new Uint8Array(gzipSync(Buffer.concat(blocks)));
}

test("a real /dev and /tmp of a pod pass", () => {
  expect(checkTmpfsTar("tmpfs-dev-43.tar.gz.img", real("tmpfs-dev-43.tar.gz.img"))).toBe(14);
  expect(checkTmpfsTar("tmpfs-dev-45.tar.gz.img", real("tmpfs-dev-45.tar.gz.img"))).toBe(1);
  expect(
    checkTmpfsTar(
      "t",
      tarOf([
        { name: "./a", type: "0", data: "hello" },
        { name: "./l", type: "2", link: "/proc/self/fd" },
      ]),
    ),
  ).toBe(2);
});

test("device nodes are refused: a pod cannot make them", () => {
  expect(() => checkTmpfsTar("tmpfs-dev-43.tar.gz.img", tarOf([{ name: "./sda", type: "4" }]))).toThrow(
    'tmpfs-dev-43.tar.gz.img entry 1 "./sda" is a block device; a pod cannot make device nodes',
  );
  expect(() => checkTmpfsTar("t", tarOf([{ name: "./mem", type: "3" }]))).toThrow("is a character device");
});

test("names and hard links that leave the tmpfs are refused", () => {
  expect(() => checkTmpfsTar("t", tarOf([{ name: "../../etc/cron.d/x", type: "0" }]))).toThrow("leaves the tmpfs");
  expect(() => checkTmpfsTar("t", tarOf([{ name: "/etc/passwd", type: "0" }]))).toThrow("leaves the tmpfs");
  expect(() => checkTmpfsTar("t", tarOf([{ name: "./h", type: "1", link: "../../etc/shadow" }]))).toThrow("is a hard link to");
  expect(() =>
    checkTmpfsTar(
      "t",
      tarOf([
        { name: "./L", type: "L", data: "../../x" },
        { name: "./innocent", type: "0" },
      ]),
    ),
  ).toThrow('"../../x" leaves the tmpfs');
});

test("garbage, bad checksums and gzip bombs are refused", () => {
  expect(() => checkTmpfsTar("t", new Uint8Array([1, 2, 3]))).toThrow("not gzip data");
  const bomb = new Uint8Array(gzipSync(new Uint8Array(1 << 20)));
  expect(() => checkTmpfsTar("t", bomb, 1 << 16)).toThrow("unpacks to more than 65536 bytes");
  const bad = gzipSync(Buffer.concat([Buffer.alloc(100, 0x61), Buffer.alloc(412)]));
  expect(() => checkTmpfsTar("t", new Uint8Array(bad))).toThrow("bad header checksum");
});
