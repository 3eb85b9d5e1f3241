/**
 * `autopod restore NAME`: a pod name restores that pod's latest image, as
 * `podman container restore NAME` does; an image id or prefix works as
 * before; a string that is both a pod with images and an image prefix is
 * refused, naming both, and --image says which.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 180_000;
let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("r");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

rootTest(
  "restore web brings back web's latest image; a name that is also an image prefix asks for --image",
  async () => {
    await host.run("web", ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"]);
    const older = (await host.ok(["checkpoint", "web", "--leave-running"], T)).split("\n")[0]!;
    await Bun.sleep(300);
    const latest = (await host.ok(["checkpoint", "web"], T)).split("\n")[0]!;
    expect((await host.pod("web")).state).toBe("checkpointed");

    const r = JSON.parse(await host.ok(["restore", "web", "--json"], T)) as { image: string; pod: { name: string; state: string } };
    expect([r.image, r.pod.name, r.pod.state]).toEqual([latest, "web", "running"]);
    expect(r.image).not.toBe(older);

    // A pod named like the start of web's older image, with an image of its own: "restore NAME" could be either.
    const clash = older.slice(0, 6);
    await host.run(clash, ["sleep", "1000"]);
    const own = (await host.ok(["checkpoint", clash], T)).split("\n")[0]!;
    const both = await host.cli(["restore", clash], T);
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toContain(
      `"${clash}" is both pod "${clash}" (its latest image is ${own.slice(0, 12)}) and the start of image id ${older.slice(0, 12)}: say which with --image ID`,
    );
    expect((await host.pod(clash)).state).toBe("checkpointed"); // nothing happened
    await host.ok(["restore", "--image", own], T);
    expect((await host.pod(clash)).state).toBe("running");

    // An image id prefix works as before; a name without images says so.
    await host.ok(["rm", "--force", "web"]);
    const back = JSON.parse(await host.ok(["restore", older.slice(0, 12), "--json"], T)) as { image: string; pod: { name: string; state: string } };
    expect([back.image, back.pod.name, back.pod.state]).toEqual([older, "web", "running"]);
    const none = await host.cli(["restore", "nosuchpod"]);
    expect(none.exitCode).not.toBe(0);
    expect(none.stderr).toContain('No image of a pod named "nosuchpod"');
  },
  T,
);
