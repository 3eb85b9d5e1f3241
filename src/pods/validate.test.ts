import { expect, test } from "bun:test";
import { FakeHost } from "./fake-host.ts";
import { checkPodName, checkRequest, chooseAddress } from "./validate.ts";

const HOSTILE = "y/".repeat(2100);
const CUT = `"${"y/".repeat(50)}…" (4,200 characters)`;
const OPTS = { layer: "overlay" as const, hasMemoryCgroup: true, protect: { stateDir: "/var/lib/autopod" } };
const refusal = (f: () => unknown): string => {
  try {
    f();
    return "accepted";
  } catch (e) {
    return (e as Error).message;
  }
};

test("refusals quote at most 100 characters of a hostile value, with its length (fuzz finding P3)", () => {
  const host = new FakeHost();
  const req = { name: "web", rootfs: "/base", cmd: ["sleep"] };
  expect(refusal(() => checkRequest({ ...req, cmd: [HOSTILE] }, host, OPTS))).toBe(`Command ${CUT} is not in the root file system "/base"`);
  expect(refusal(() => checkRequest({ ...req, hostname: HOSTILE }, host, OPTS))).toBe(`Invalid hostname ${CUT}: 1 to 64 letters, digits, '.', '_' or '-'`);
  expect(refusal(() => checkRequest({ ...req, env: { [HOSTILE]: "1" } }, host, OPTS))).toBe(`Invalid environment variable name ${CUT}`);
  expect(refusal(() => checkRequest({ ...req, rootfs: `/${HOSTILE}` }, host, OPTS))).toBe(
    `Root file system "/${"y/".repeat(49)}y…" (4,201 characters) does not exist`,
  );
  expect(refusal(() => checkPodName(HOSTILE))).toStartWith(`Invalid pod name ${CUT}: `);
  expect(refusal(() => chooseAddress(HOSTILE, { base: 0, prefix: 24 } as never, new Set()))).toStartWith(`Invalid address ${CUT}: `);
});

test("control characters in a refused value are escaped, not sent to the terminal", () => {
  expect(refusal(() => checkPodName("a\x1b]0;owned\x07"))).toStartWith('Invalid pod name "a\\u001b]0;owned\\u0007": ');
});

test("CPU and process limits: in range, and only where the host has the controller", () => {
  const host = new FakeHost();
  const req = { name: "web", rootfs: "/base", cmd: ["sleep"] };
  expect(checkRequest({ ...req, cpus: 1.5, pidsMax: 64 }, host, OPTS)).toMatchObject({ cpus: 1.5, pidsMax: 64 });
  expect(checkRequest(req, host, OPTS)).toMatchObject({ cpus: null, pidsMax: null });
  expect(refusal(() => checkRequest({ ...req, cpus: 0.001 }, host, OPTS))).toBe('CPU limit "0.001" is out of range: 0.01 to 4096 CPUs');
  expect(refusal(() => checkRequest({ ...req, cpus: Number.NaN }, host, OPTS))).toBe('CPU limit "NaN" is out of range: 0.01 to 4096 CPUs');
  expect(refusal(() => checkRequest({ ...req, pidsMax: 3 }, host, OPTS))).toBe(
    'Process limit "3" is out of range: 4 to 4194304 (starting the pod and each exec take two of it)',
  );
  expect(refusal(() => checkRequest({ ...req, pidsMax: 10.5 }, host, OPTS))).toStartWith('Process limit "10.5" is out of range');
  host.hasCgroupController = (c) => c !== "pids";
  expect(refusal(() => checkRequest({ ...req, pidsMax: 10 }, host, OPTS))).toBe("Cannot limit processes: this host has no pids cgroup controller");
  expect(refusal(() => checkRequest({ ...req, cpus: 1 }, host, { ...OPTS, hasMemoryCgroup: false }))).toBe(
    "Cannot limit CPU time: this host has no cpu cgroup controller",
  );
});
