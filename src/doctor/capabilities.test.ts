import { describe, expect, test } from "bun:test";
import { capabilityChecks, NEEDED_CAPABILITIES, parseCapEff } from "./capabilities.ts";

const ALL = NEEDED_CAPABILITIES.reduce((m, c) => m | (1n << c.bit), 0n);
const without = (...names: string[]) => NEEDED_CAPABILITIES.filter((c) => names.includes(c.name)).reduce((m, c) => m & ~(1n << c.bit), ALL);
const PATCHED = { path: "/usr/local/sbin/criu", gitId: "autopod-ed8a74321b5a", isPatched: true };
const UNPATCHED = { path: "/usr/sbin/criu", gitId: null, isPatched: false };

describe("capabilityChecks", () => {
  test("a full set gives no check", () => {
    expect(capabilityChecks(ALL, UNPATCHED, "x")).toEqual([]);
  });

  test("root of these machines (CapEff 000001fffeffffff) lacks only CAP_SYS_RESOURCE", () => {
    const caps = parseCapEff("Name:\tx\nCapEff:\t000001fffeffffff\n")!;
    expect(capabilityChecks(caps, PATCHED, "x").map((c) => c.id)).toEqual(["cap_sys_resource"]);
  });

  test("without CAP_SYS_RESOURCE: a warning when the carried CRIU works around it, a failure with the fix when it does not", () => {
    const [patched] = capabilityChecks(without("CAP_SYS_RESOURCE"), PATCHED, "bash install-criu.sh");
    expect(patched).toMatchObject({ status: "warn", required: false });
    expect(patched!.detail).toContain("Can't get rlimit 0: Operation not permitted");
    expect(patched!.detail).toContain("works around the dump: it reads /proc/PID/limits");
    const [plain] = capabilityChecks(without("CAP_SYS_RESOURCE"), UNPATCHED, "bash install-criu.sh");
    expect(plain).toMatchObject({ status: "fail", required: false });
    expect(plain!.detail).toContain("/usr/sbin/criu (GitID none) lacks autopod's CRIU patches");
    expect(plain!.fix).toContain("bash install-criu.sh");
  });

  test("a missing required capability fails and says what fails without it", () => {
    const checks = capabilityChecks(without("CAP_SYS_PTRACE", "CAP_SETUID"), PATCHED, "x");
    expect(checks.map((c) => [c.id, c.status, c.required])).toEqual([
      ["cap_sys_ptrace", "fail", true],
      ["cap_setuid", "fail", true],
    ]);
    expect(checks[0]!.detail).toBe("missing: every checkpoint fails (needed for CRIU seizes the pod's processes to dump them)");
  });

  test("CAP_CHECKPOINT_RESTORE is not needed where CAP_SYS_ADMIN is present", () => {
    expect(capabilityChecks(without("CAP_CHECKPOINT_RESTORE"), PATCHED, "x")).toEqual([]);
    expect(capabilityChecks(without("CAP_CHECKPOINT_RESTORE", "CAP_SYS_ADMIN"), PATCHED, "x").map((c) => c.id)).toEqual([
      "cap_sys_admin",
      "cap_checkpoint_restore",
    ]);
  });
});
