import { describe, expect, test } from "bun:test";
import { parseKernelVersionString, readBzImageVersion } from "./kernel-image.ts";

/** A minimal bzImage: setup header with "HdrS", protocol 2.15 and the version pointer. */
function fakeBzImage(version: string, at = 0x3000): Uint8Array {
  const buf = new Uint8Array(at + version.length + 64);
  buf.set([0x48, 0x64, 0x72, 0x53], 0x202);
  buf[0x206] = 0x0f;
  buf[0x207] = 0x02;
  const pointer = at - 0x200;
  buf[0x20e] = pointer & 0xff;
  buf[0x20f] = pointer >> 8;
  buf.set(new TextEncoder().encode(version), at);
  return buf;
}

describe("readBzImageVersion", () => {
  test("the first 17,856 bytes of Debian's vmlinuz-6.1.0-56-cloud-amd64 (real image)", async () => {
    const head = new Uint8Array(await Bun.file(new URL("testdata/vmlinuz-6.1.0-56-cloud-amd64.head", import.meta.url)).arrayBuffer());
    expect(readBzImageVersion(head)).toBe("6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)");
  });
  test("a built header", () => {
    expect(readBzImageVersion(fakeBzImage("6.18.99-fc-v700 (me@here) #2 SMP"))).toBe("6.18.99-fc-v700 (me@here) #2 SMP");
  });
  test("not a bzImage: no magic, old protocol, zero pointer, pointer past the end, too short", () => {
    const noMagic = fakeBzImage("6.1.0");
    noMagic[0x202] = 0;
    const oldProtocol = fakeBzImage("6.1.0");
    oldProtocol[0x207] = 0x01;
    const zero = fakeBzImage("6.1.0");
    zero[0x20e] = 0;
    zero[0x20f] = 0;
    const pastEnd = fakeBzImage("6.1.0").subarray(0, 0x1000);
    for (const img of [noMagic, oldProtocol, zero, pastEnd, new Uint8Array(100), new TextEncoder().encode("\x7fELF")]) {
      expect(readBzImageVersion(img)).toBeNull();
    }
  });
});

describe("parseKernelVersionString", () => {
  const cases: Array<[string, object]> = [
    [
      "6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)",
      { release: "6.1.0-56-cloud-amd64", build: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)" },
    ],
    // this host's /proc/version
    [
      "Linux version 6.18.44-fc-v669 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) #1 SMP PREEMPT_DYNAMIC @0\n",
      { release: "6.18.44-fc-v669", build: "#1 SMP PREEMPT_DYNAMIC @0" },
    ],
    ["5.15.0-91-generic", { release: "5.15.0-91-generic" }],
  ];
  for (const [s, want] of cases) test(s.slice(0, 40), () => expect(parseKernelVersionString(s)).toEqual(want as never));
});
