/**
 * A test host set up for the update cycle: its status checks look at a
 * fixture root of its own; its update command is a script that records when
 * it ran (and may take a while); its reboot command stops the agent and
 * starts it again as systemd would, clearing the reboot sentinel as a boot
 * empties /run; evacuation is the agent's test-only fake (it records calls).
 * needReboot() puts the sentinel and asks the agent to check.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { sh, TestHost } from "./_pods.ts";
import { autopodArgv } from "./_support.ts";

/**
 * <dir>/reboot.sh: the test's "reboot" of a host: stop its agent as shutdown
 * would, empty the fixture root's /run of the sentinel as a boot does, and
 * start the agent again as systemd would (with `agentArgs`), logging to
 * <dir>/agent-after-reboot.log. Run it with setsid -f: it outlives the agent.
 */
export function writeRebootScript(host: TestHost, dir: string, root: string, agentArgs: string[] = []): string {
  const path = join(dir, "reboot.sh");
  writeFileSync(
    path,
    [
      "#!/bin/bash",
      "set -eu",
      `echo "reboot $(date +%s)" >> ${dir}/reboots.log`,
      `kill -TERM "$(cat ${host.stateDir}/agent.pid)"`,
      `flock -w 60 ${host.stateDir}/agent.lock true`,
      `rm -f ${root}/run/reboot-required`,
      `exec nsenter --net=/run/netns/${host.netns} -- ${autopodArgv().join(" ")} agent --config ${host.configPath} ${agentArgs.map((a) => `'${a}'`).join(" ")} >> ${dir}/agent-after-reboot.log 2>&1`,
    ].join("\n") + "\n",
  );
  chmodSync(path, 0o755);
  return path;
}

/** Stop whichever agent runs on the host now (after a "reboot" it is nobody's child): SIGTERM, then wait for its state lock. */
export async function stopAnyAgent(h: TestHost): Promise<void> {
  const pidFile = join(h.stateDir, "agent.pid");
  if (existsSync(pidFile)) {
    try {
      process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGTERM");
      await sh(["flock", "-w", "60", join(h.stateDir, "agent.lock"), "true"], { timeoutMs: 70_000 });
    } catch {
      // gone already
    }
  }
  h.agent = null;
}

export class UpdateTestHost {
  private constructor(
    readonly host: TestHost,
    readonly dir: string,
    readonly root: string,
  ) {}

  /** `fakeEvacuator: false` uses the agent's real evacuation (on a host alone: its pods are suspended to disk and restored). */
  static async start(
    tag: string,
    opts: { policy?: string[]; updateSeconds?: number; log?: string; fakeEvacuator?: boolean; checkSeconds?: number } = {},
  ): Promise<UpdateTestHost> {
    const dir = mkdtempSync(join(tmpdir(), `autopod-update-${tag}-`));
    const root = join(dir, "root");
    for (const d of ["run", "var/lib", "etc"]) mkdirSync(join(root, d), { recursive: true });
    const log = opts.log ?? join(dir, "update.log");
    writeFileSync(
      join(dir, "update.sh"),
      `#!/bin/sh\necho "start ${tag} $(date +%s%N)" >> ${log}\nsleep ${opts.updateSeconds ?? 0}\necho "end ${tag} $(date +%s%N)" >> ${log}\n`,
    );
    const host = await TestHost.start(tag, {
      extraConfig: [
        "[status]",
        `root = "${root}"`,
        "lock_timeout_seconds = 5",
        "[policy]",
        'mode = "evacuate-update-reboot"',
        'trigger = ["reboot-required"]',
        `check_seconds = ${opts.checkSeconds ?? 1}`,
        `update_command = ["/bin/sh", "${join(dir, "update.sh")}"]`,
        `reboot_command = ["setsid", "-f", "/bin/bash", "${join(dir, "reboot.sh")}"]`,
        ...(opts.fakeEvacuator === false ? [] : [`test_evacuator_file = "${join(dir, "evacuations.jsonl")}"`]),
        ...(opts.policy ?? []),
      ],
    }).catch((e) => {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    });
    writeRebootScript(host, dir, root);
    return new UpdateTestHost(host, dir, root);
  }

  /** Put the reboot-required sentinel and have the agent check now. */
  async needReboot(): Promise<void> {
    writeFileSync(join(this.root, "run/reboot-required"), "*** System restart required ***\n");
    await fetch("http://autopod/v1/status?refresh=true", { unix: this.host.socket } as RequestInit);
  }

  async events(): Promise<UpdateEvent[]> {
    const r = await this.host.cli(["events", "--json", "-n", "100000"]);
    return r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateEvent[]) : [];
  }

  async waitForEvent(kind: string, timeoutMs: number): Promise<UpdateEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = await this.events();
      if (all.some((e) => e.kind === kind)) return all;
      if (Date.now() > deadline) throw new Error(`No "${kind}" event within ${timeoutMs} ms; events: ${all.map((e) => `${e.kind}: ${e.msg}`).join("\n")}`);
      await Bun.sleep(250);
    }
  }

  /** Remove the pods, stop whichever agent runs now (the "rebooted" one is nobody's child), and everything else. */
  async dispose(): Promise<void> {
    const h = this.host;
    const pods = await h.pods().catch(() => []);
    if (pods.length) await h.cli(["rm", "--force", ...pods.map((p) => p.name)]);
    await stopAnyAgent(h);
    await h.dispose();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
