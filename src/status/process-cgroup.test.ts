import { expect, test } from "bun:test";
import { parseProcessCgroup } from "./process-cgroup.ts";

test("this host's /proc/self/cgroup (real, cgroup v1 hybrid without systemd): no unit, no pod", async () => {
  expect(parseProcessCgroup(await Bun.file(new URL("testdata/proc-cgroup-hybrid.txt", import.meta.url)).text())).toEqual({});
});

// Fixtures in the kernel's format for hosts this one is not: systemd on v2 and v1, and pods.
const cases: Array<[string, string, object]> = [
  ["v2 service (fixture)", "0::/system.slice/nginx.service\n", { unit: "nginx.service" }],
  ["v2 session scope (fixture)", "0::/user.slice/user-1000.slice/session-3.scope\n", { unit: "session-3.scope" }],
  ["v2 user service, innermost unit wins (fixture)", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n", { unit: "foo.service" }],
  ["v2 sub-cgroup of a service (fixture)", "0::/system.slice/docker.service/sub\n", { unit: "docker.service" }],
  ["v1 with name=systemd (fixture)", "12:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/\n", { unit: "cron.service" }],
  [
    "pod on this hybrid host's memory hierarchy (fixture, path from platform/linux/cgroup.ts)",
    "4:memory:/autopod/a1b2c3/web\n9:name=systemd:/\n0::/\n",
    { pod: "web" },
  ],
  ["pod on v2 under a unit (fixture)", "0::/system.slice/autopod.service/autopod/a1b2c3/db\n", { unit: "autopod.service", pod: "db" }],
  ["root cgroup", "0::/\n", {}],
];
for (const [name, text, want] of cases) test(name, () => expect(parseProcessCgroup(text)).toEqual(want));
