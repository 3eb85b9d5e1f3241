import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LaunchRequest, nativeInitArgv } from "./launcher.ts";

const base = mkdtempSync(join(tmpdir(), "autopod-launcher-"));
const request = (extra: Partial<LaunchRequest> = {}): LaunchRequest => ({
  plan: {
    hostname: "web",
    root: { kind: "overlay", mountpoint: join(base, "root"), lower: base, upper: join(base, "upper"), work: join(base, "work") },
    volumes: [],
    workdir: "/",
    cmd: ["sleep", "1"],
    env: [],
    logPath: "/.autopod/pod.log",
  },
  planPath: join(base, "launch.json"),
  netns: "autopod-k1-web",
  cgroup: null,
  ...extra,
});

test("the init enters an existing net namespace, or makes it with the veth pair when told", () => {
  const enters = nativeInitArgv("/init", request({ network: { address: "10.213.0.2/24", gateway: "10.213.0.1" } }));
  expect(enters.slice(enters.indexOf("--netns"), enters.indexOf("--netns") + 2)).toEqual(["--netns", "/run/netns/autopod-k1-web"]);
  expect(enters).not.toContain("--new-netns");
  const makes = nativeInitArgv(
    "/init",
    request({ network: { address: "10.213.0.2/24", gateway: "10.213.0.1" }, newNetns: { hostVeth: "ap0123", bridge: "br0" } }),
  );
  const at = makes.indexOf("--new-netns");
  expect(makes.slice(at, at + 4)).toEqual(["--new-netns", "/run/netns/autopod-k1-web", "ap0123", "br0"]);
  expect(makes).not.toContain("--netns");
  expect(makes.slice(makes.indexOf("--net"), makes.indexOf("--net") + 3)).toEqual(["--net", "10.213.0.2/24", "10.213.0.1"]);
  // Options come before "--", the pod's command after it.
  expect(makes.slice(makes.indexOf("--"))).toEqual(["--", "sleep", "1"]);
});
