#!/usr/bin/env bun
/**
 * Figures for the operator's everyday, as JSON:
 * - `autopod exec -it NAME sh` through a real terminal: from starting the
 *   client to the shell's first prompt, and a key's round trip (typed into
 *   the caller's terminal until the pod's terminal echoes it back);
 * - `autopod exec NAME true`, whole process;
 * - `autopod run` until the command runs, with and without --cpus and
 *   --pids-max (on cgroup v1 each limit is one more hierarchy to join).
 * Usage (root): bun bench/everyday.ts   (uses dist/autopod: run `bun build.ts` first)
 * RUNS=N sets the samples per figure (default 20).
 */
import { existsSync } from "node:fs";
import { testRootfs, TestHost } from "../test/_pods.ts";
import { CallerPty } from "../test/_pty.ts";
import { autopodArgv, DIST } from "../test/_support.ts";
import { summary, timeProcess } from "./_stats.ts";

const RUNS = Number(process.env.RUNS ?? 20);
if (process.getuid?.() !== 0) {
  console.error("bench/everyday.ts needs root (namespaces, cgroups)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`bun build.ts\` first`);
  process.exit(1);
}

const host = await TestHost.start("bench");
try {
  await host.run("web", ["sleep", "100000"]);
  const env = { ...process.env, ...host.env } as Record<string, string>;

  const toPrompt: number[] = [];
  const keyRoundTrip: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const t = new CallerPty([...autopodArgv(), "exec", "-it", "web", "sh"], env, { rows: 24, cols: 80 });
    await t.waitFor(/# /); // busybox ash, root
    toPrompt.push(performance.now() - t0);
    for (const ch of "abcdefghij") {
      const at = t.text.length;
      const k = performance.now();
      t.type(ch);
      await t.waitFor(new RegExp(ch), at, 5000, 1);
      keyRoundTrip.push(performance.now() - k);
    }
    t.type("\x15exit\r");
    await t.proc.exited;
    await t.close();
  }

  const execTrue: number[] = [];
  for (let i = 0; i < RUNS; i++) execTrue.push(timeProcess([...autopodArgv(), "exec", "web", "true"], env));

  const run = async (flags: string[]): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < Math.min(RUNS, 10); i++) {
      out.push(timeProcess([...autopodArgv(), "run", `b${i}`, "--rootfs", testRootfs(), ...flags, "--", "sleep", "1000"], env));
      await host.ok(["rm", "--force", `b${i}`]);
    }
    return out;
  };
  const runPlain = await run(["--memory", "64m"]);
  const runLimited = await run(["--memory", "64m", "--cpus", "0.5", "--pids-max", "64"]);

  console.log(
    JSON.stringify(
      {
        exec_it_to_prompt_ms: summary(toPrompt),
        exec_it_key_round_trip_ms: summary(keyRoundTrip),
        exec_true_ms: summary(execTrue),
        run_memory_only_ms: summary(runPlain),
        run_memory_cpus_pids_ms: summary(runLimited),
      },
      null,
      2,
    ),
  );
} finally {
  await host.dispose();
}
