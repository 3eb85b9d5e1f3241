import { describe, expect, test } from "bun:test";
import { type InstalledKernel, isKernelImageName, judgeKernels, releaseFromImageName } from "./kernel.ts";

describe("isKernelImageName", () => {
  const yes = [
    "vmlinuz-6.1.0-18-amd64",
    "vmlinuz-5.14.0-362.el9.x86_64",
    "vmlinux-6.6.13",
    "bzImage-6.18.44-fc-v669",
    "kernel-6.1.21-v8+",
    "Image-6.1.0-18-arm64",
    "vmlinuz-linux",
    "vmlinuz-linux-lts",
    "vmlinuz",
  ];
  const no = [
    "initrd.img-6.1.0-18-amd64",
    "initramfs-5.14.0-362.el9.x86_64.img",
    "System.map-6.1.0-18-amd64",
    "config-6.1.0-18-amd64",
    "vmlinuz.old",
    "vmlinuz-6.1.0-18-amd64.old",
    "vmlinuz-6.1.0-18-amd64.sig",
    ".vmlinuz-5.14.0-362.el9.x86_64.hmac",
    "vmlinuz-0-rescue-8a1b2c3d4e5f",
    "vmlinuz-6.1.0-18-amd64.dpkg-bak",
    "grub",
    "efi",
  ];
  for (const n of yes) test(`${n} is a kernel image`, () => expect(isKernelImageName(n)).toBe(true));
  for (const n of no) test(`${n} is not`, () => expect(isKernelImageName(n)).toBe(false));
});

test("releaseFromImageName", () => {
  expect(releaseFromImageName("vmlinuz-6.1.0-18-amd64")).toBe("6.1.0-18-amd64");
  expect(releaseFromImageName("vmlinuz-linux")).toBeNull();
  expect(releaseFromImageName("vmlinuz")).toBeNull();
});

const k = (release: string, build?: string): InstalledKernel => ({ release, build, path: `/boot/vmlinuz-${release}`, from: build ? "header" : "file name" });
const DEB_BUILD = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)";

describe("judgeKernels", () => {
  test("a newer release of the running flavour: version upgrade", () => {
    const r = judgeKernels({ release: "6.1.0-17-amd64", build: DEB_BUILD }, [k("6.1.0-17-amd64", DEB_BUILD), k("6.1.0-18-amd64")]);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toEqual([
      { kind: "kernel", change: "version_upgrade", running: "6.1.0-17-amd64", installed: "6.1.0-18-amd64", image: "/boot/vmlinuz-6.1.0-18-amd64" },
    ]);
  });
  test("the same release rebuilt: ABI-only rebuild, reported apart", () => {
    const r = judgeKernels({ release: "6.1.0-18-amd64", build: DEB_BUILD }, [k("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.85-1 (2024-04-11)")]);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons[0]).toMatchObject({
      change: "abi_rebuild",
      running_build: DEB_BUILD,
      installed_build: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.85-1 (2024-04-11)",
    });
  });
  test("the running kernel is the newest: ok", () => {
    expect(judgeKernels({ release: "6.1.0-18-amd64", build: DEB_BUILD }, [k("6.1.0-17-amd64"), k("6.1.0-18-amd64", DEB_BUILD)]).verdict).toBe("ok");
  });
  test("a build unknown (name only) never claims a rebuild", () => {
    expect(judgeKernels({ release: "6.1.0-18-amd64", build: DEB_BUILD }, [k("6.1.0-18-amd64")]).verdict).toBe("ok");
  });
  test("a custom kernel (this host's) beside newer distribution kernels of other flavours: no alarm", () => {
    const r = judgeKernels({ release: "6.18.44-fc-v669", build: "#1 SMP PREEMPT_DYNAMIC @0" }, [k("6.1.0-56-cloud-amd64"), k("7.0.0-1-amd64")]);
    expect(r.verdict).toBe("ok");
    expect(r.summary).toContain("not installed here");
  });
  test("another flavour newer than the running one is not the running one's successor", () => {
    expect(judgeKernels({ release: "6.1.0-18-cloud-amd64", build: "" }, [k("6.1.0-18-cloud-amd64"), k("6.1.0-25-amd64"), k("6.1.0-25-rt-amd64")]).verdict).toBe(
      "ok",
    );
  });
  test("nothing installed: not applicable", () => {
    expect(judgeKernels({ release: "6.18.44-fc-v669", build: "" }, []).verdict).toBe("not_applicable");
  });
  test("running a kernel newer than all installed of its flavour: ok", () => {
    expect(judgeKernels({ release: "6.1.0-25-amd64", build: "" }, [k("6.1.0-18-amd64")]).verdict).toBe("ok");
  });
});
