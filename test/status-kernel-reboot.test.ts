/**
 * The kernel and reboot checks against built fake /boot and /run trees, with
 * this host's real running kernel; against a real Debian kernel package's
 * image unpacked into a fake root (downloaded once with apt into
 * .cache/debs/); and this host's own kernel as it is.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO } from "./_support.ts";
import { run, which } from "../src/platform/linux/exec.ts";
import type { CheckOptions, KernelReason } from "../src/status/checker.ts";
import { hostPaths } from "../src/status/host-paths.ts";
import { kernelChecker } from "../src/status/kernel.ts";
import { KERNEL_HEADER_BYTES, parseKernelVersionString, readBzImageVersion } from "../src/status/kernel-image.ts";
import { parseKernelRelease } from "../src/status/kernel-release.ts";
import { rebootChecker } from "../src/status/reboot.ts";

const RELEASE = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
const BUILD = readFileSync("/proc/sys/kernel/version", "utf8").trim();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** An x86 bzImage header (setup sectors, "HdrS", boot protocol 2.15) carrying a version string, padded like a real image. */
function bzImage(version: string): Uint8Array {
  const at = 0x3ec0; // where Debian's images keep it, near enough
  const buf = new Uint8Array(64 * 1024);
  buf[0x1fe] = 0x55;
  buf[0x1ff] = 0xaa;
  buf.set(new TextEncoder().encode("HdrS"), 0x202);
  buf[0x206] = 0x0f;
  buf[0x207] = 0x02;
  buf[0x20e] = (at - 0x200) & 0xff;
  buf[0x20f] = (at - 0x200) >> 8;
  buf.set(new TextEncoder().encode(`${version}\0`), at);
  return buf;
}

/** The running release with its upstream version's last number raised: same flavour, newer. */
function newerRelease(release: string): string {
  return release.replace(/^(\d+(?:\.\d+)*?)(\d+)(?=[^.\d]|$)/, (_, head: string, last: string) => `${head}${Number(last) + 1}`);
}

function fakeHost(files: Record<string, string | Uint8Array>): CheckOptions {
  const root = mkdtempSync(join(tmpdir(), "autopod-kernel-"));
  dirs.push(root);
  mkdirSync(join(root, "boot"));
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), content);
  }
  // The running kernel is this host's: /proc is the real one.
  return { paths: hostPaths({ root }), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 };
}

describe(`kernel check on fake /boot trees, running ${RELEASE}`, () => {
  const newer = newerRelease(RELEASE);
  test(`the helper makes a newer release of the same flavour (${newer})`, () => {
    expect(newer).not.toBe(RELEASE);
    expect(parseKernelRelease(newer).flavour).toBe(parseKernelRelease(RELEASE).flavour);
  });

  test("an image whose header carries a newer version is reported, by its header and not its file name", async () => {
    // Named like the running kernel, but its header says newer: the header wins, as in needrestart.
    const opts = fakeHost({ [`boot/vmlinuz-${RELEASE}`]: bzImage(`${newer} (test@autopod) #1 SMP PREEMPT_DYNAMIC`) });
    const r = await kernelChecker.check(opts);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toEqual([
      { kind: "kernel", change: "version_upgrade", running: RELEASE, installed: newer, image: join(opts.paths.boot, `vmlinuz-${RELEASE}`) },
    ]);
  });

  test("an image without a version in its name (Arch's vmlinuz-linux) is read by its header", async () => {
    const r = await kernelChecker.check(
      fakeHost({ "boot/vmlinuz-linux": bzImage(`${newer} (test@autopod) #1 SMP`), [`boot/vmlinuz-${RELEASE}`]: bzImage(`${RELEASE} (builder) ${BUILD}`) }),
    );
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons[0]).toMatchObject({ change: "version_upgrade", installed: newer });
  });

  test("the same version is not reported; an initrd claiming a newer one beside it is ignored", async () => {
    const r = await kernelChecker.check(
      fakeHost({
        [`boot/vmlinuz-${RELEASE}`]: bzImage(`${RELEASE} (builder) ${BUILD}`),
        [`boot/initrd.img-${newer}`]: bzImage(`${newer} (test@autopod) #1 SMP`),
        [`boot/initramfs-${newer}.img`]: "not a kernel",
        [`boot/System.map-${newer}`]: "",
        [`boot/config-${newer}`]: "",
      }),
    );
    expect(r.verdict).toBe("ok");
    expect(r.reasons).toEqual([]);
  });

  test("a tiny file named like a newer kernel, with no kernel header, is not one (needrestart ignores files under 1 MiB)", async () => {
    const r = await kernelChecker.check(
      fakeHost({ [`boot/vmlinuz-${newer}`]: "not a kernel\n", [`boot/vmlinuz-${RELEASE}`]: bzImage(`${RELEASE} (builder) ${BUILD}`) }),
    );
    expect(r.verdict).toBe("ok");
    expect(r.reasons).toEqual([{ kind: "note", message: expect.stringContaining(`vmlinuz-${newer}" has no kernel header and is 13 bytes, too small`) }]);
  });

  test("an image of 1 MiB or more without a bzImage header (arm64's Image, an ELF vmlinux) counts by its name", async () => {
    const r = await kernelChecker.check(fakeHost({ [`boot/vmlinuz-${newer}`]: new Uint8Array(1024 * 1024) }));
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons[0]).toMatchObject({ change: "version_upgrade", installed: newer });
  });

  test("the running release rebuilt (same uname -r, other uname -v) is an ABI-only rebuild, reported apart", async () => {
    const r = await kernelChecker.check(fakeHost({ [`boot/vmlinuz-${RELEASE}`]: bzImage(`${RELEASE} (builder) #2 SMP PREEMPT_DYNAMIC rebuilt`) }));
    expect(r.verdict).toBe("reboot_required");
    expect((r.reasons[0] as KernelReason).change).toBe("abi_rebuild");
    expect(r.reasons[0]).toMatchObject({ running_build: BUILD.replace(/\s+/g, " "), installed_build: "#2 SMP PREEMPT_DYNAMIC rebuilt" });
  });

  test("newer kernels of another flavour (Debian's, beside this custom one) raise no alarm", async () => {
    const flavour = parseKernelRelease(RELEASE).flavour;
    const others = ["amd64", "cloud-amd64", "rt-amd64"].filter((f) => f !== flavour);
    const files = Object.fromEntries(others.map((f) => [`boot/vmlinuz-99.0.0-1-${f}`, bzImage(`99.0.0-1-${f} (debian-kernel) #1 SMP`)]));
    const r = await kernelChecker.check(fakeHost(files));
    expect(r.verdict).toBe("ok");
    expect(r.summary).toContain("ignoring other flavours");
  });

  test("with /boot empty, /lib/modules stands in", async () => {
    const r = await kernelChecker.check(fakeHost({ [`lib/modules/${newer}/modules.dep`]: "", [`lib/modules/${RELEASE}/modules.dep`]: "" }));
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons[0]).toMatchObject({ change: "version_upgrade", installed: newer, image: expect.stringContaining(`lib/modules/${newer}`) });
  });

  test("this host as it is: no false alarm for its custom kernel", async () => {
    const r = await kernelChecker.check({ paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 });
    expect(["ok", "not_applicable"]).toContain(r.verdict);
    console.log(`kernel check here: ${r.verdict}: ${r.summary}`);
  });
});

/** Run a command (an argument array, no shell); throw with its output if it fails. */
function must(argv: string[], cwd?: string): string {
  const r = Bun.spawnSync(argv, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

/**
 * The .deb of the kernel Debian's linux-image-amd64 depends on now (linux-image-6.1.0-NN-amd64),
 * downloaded with apt into .cache/debs/ the first time (then reused).
 */
function debianKernelDeb(): string {
  const dir = join(REPO, ".cache/debs");
  mkdirSync(dir, { recursive: true });
  const cached = readdirSync(dir).filter((n) => /^linux-image-\d[^_]*-amd64_.*_amd64\.deb$/.test(n));
  if (cached.length > 0) return join(dir, cached.sort().at(-1)!);
  let depends = Bun.spawnSync(["apt-cache", "depends", "linux-image-amd64"], { stdout: "pipe", stderr: "pipe" }).stdout.toString();
  if (!/Depends: linux-image-/.test(depends)) {
    must(["apt-get", "update"]);
    depends = must(["apt-cache", "depends", "linux-image-amd64"]);
  }
  const pkg = /Depends: (linux-image-\d\S*-amd64)\b/.exec(depends)?.[1];
  if (!pkg) throw new Error(`apt-cache depends linux-image-amd64 names no kernel package: ${depends}`);
  must(["apt-get", "download", pkg], dir);
  const got = readdirSync(dir).find((n) => n.startsWith(`${pkg}_`) && n.endsWith(".deb"));
  if (!got) throw new Error(`apt-get download ${pkg} left no .deb in ${dir}`);
  return join(dir, got);
}

describe("kernel check against a real Debian kernel package unpacked into a fake root", () => {
  let root: string;
  let image: string;
  let release: string;
  let build: string;

  beforeAll(() => {
    const deb = debianKernelDeb();
    root = mkdtempSync(join(tmpdir(), "autopod-debian-kernel-"));
    dirs.push(root);
    // Only its /boot: the image (and System.map, config), as dpkg would install them. No shell: tar reads the pipe.
    const tar = Bun.spawnSync(["dpkg-deb", "--fsys-tarfile", deb], { stdout: "pipe", stderr: "pipe" });
    if (tar.exitCode !== 0) throw new Error(`dpkg-deb --fsys-tarfile ${deb} failed: ${tar.stderr.toString()}`);
    const x = Bun.spawnSync(["tar", "-x", "-C", root, "--wildcards", "./boot/*"], { stdin: tar.stdout, stdout: "pipe", stderr: "pipe" });
    if (x.exitCode !== 0) throw new Error(`tar -x of ${deb} failed: ${x.stderr.toString()}`);
    const name = readdirSync(join(root, "boot")).find((n) => n.startsWith("vmlinuz-"));
    if (!name) throw new Error(`${deb} has no /boot/vmlinuz-*: ${readdirSync(join(root, "boot")).join(", ")}`);
    image = join(root, "boot", name);
    release = name.slice("vmlinuz-".length);
    // What the kernel itself says (uname -v), as Debian builds it: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-..)".
    const version = readBzImageVersion(new Uint8Array(readFileSync(image).subarray(0, KERNEL_HEADER_BYTES)));
    expect(version).not.toBeNull();
    build = parseKernelVersionString(version!).build!;
    expect(parseKernelVersionString(version!).release).toBe(release);
    expect(build).toMatch(/^#\d+ SMP .*Debian /);
  }, 300_000);

  /** The checks' options for the fake root, with a fake procfs saying which kernel runs. */
  function running(osrelease: string, version: string): CheckOptions {
    const proc = mkdtempSync(join(tmpdir(), "autopod-proc-"));
    dirs.push(proc);
    mkdirSync(join(proc, "sys/kernel"), { recursive: true });
    writeFileSync(join(proc, "sys/kernel/osrelease"), `${osrelease}\n`);
    writeFileSync(join(proc, "sys/kernel/version"), `${version}\n`);
    return { paths: hostPaths({ root, proc }), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 };
  }

  test("running an older kernel of its flavour: a reboot is required, for the version read from the real image's header", async () => {
    const older = release.replace(/^(\d+\.\d+\.\d+-)(\d+)/, (_, head: string, abi: string) => `${head}${Number(abi) - 1}`);
    expect(older).not.toBe(release);
    const r = await kernelChecker.check(running(older, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-0 (2020-01-01)"));
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toEqual([{ kind: "kernel", change: "version_upgrade", running: older, installed: release, image }]);
  });

  test("running exactly that kernel: ok", async () => {
    const r = await kernelChecker.check(running(release, build));
    expect(r.verdict).toBe("ok");
    expect(r.summary).toBe(`running ${release}, the newest installed`);
  });

  test("running that release, but an earlier build of it: an ABI-only rebuild", async () => {
    const r = await kernelChecker.check(running(release, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-1 (2020-01-01)"));
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toEqual([
      {
        kind: "kernel",
        change: "abi_rebuild",
        running: release,
        installed: release,
        running_build: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-1 (2020-01-01)",
        installed_build: build,
        image,
      },
    ]);
  });

  test(`this host's running kernel (${RELEASE}) beside it: ${parseKernelRelease(RELEASE).flavour === "amd64" ? "compared" : "another flavour, ignored"}`, async () => {
    const r = await kernelChecker.check({ paths: hostPaths({ root }), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 10_000 });
    if (parseKernelRelease(RELEASE).flavour !== "amd64") {
      expect(r.verdict).toBe("ok");
      expect(r.summary).toContain(`ignoring other flavours (${release})`);
    } else {
      expect(r.verdict).not.toBe("not_applicable");
      expect(r.verdict).not.toBe("failed");
    }
  });
});

describe("reboot check", () => {
  test("a sentinel file is reported with the packages that asked for it", async () => {
    const opts = fakeHost({
      "run/reboot-required": "*** System restart required ***\n",
      "run/reboot-required.pkgs": "linux-image-6.1.0-56-cloud-amd64\nlibc6\n",
    });
    const r = await rebootChecker.check(opts);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toContainEqual({
      kind: "file",
      path: join(opts.paths.run, "reboot-required"),
      detail: "packages: linux-image-6.1.0-56-cloud-amd64, libc6",
    });
  });
  test("no sentinel: ok", async () => {
    expect((await rebootChecker.check(fakeHost({}))).verdict).toBe("ok");
  });
});
