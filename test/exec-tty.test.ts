/**
 * `autopod exec -it`: a shell in a pod, driven through a real terminal on the
 * caller's side (a host pty whose slave is autopod's controlling terminal),
 * as an operator types: commands and their output, the pod's own devpts, the
 * window size and a resize, Ctrl-C, Ctrl-D, the exit status, raw mode put
 * back, and a connection that goes away.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { TestHost } from "./_pods.ts";
import { CallerPty } from "./_pty.ts";
import { autopodArgv, isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let host: TestHost;
beforeAll(async () => {
  if (isRoot) {
    host = await TestHost.start("t");
    await host.run("web", ["sleep", "100000"]);
  }
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

function shell(size = { rows: 30, cols: 100 }): CallerPty {
  return new CallerPty([...autopodArgv(), "exec", "-it", "web", "sh"], { ...process.env, ...host.env, PS1: "" }, size);
}

/**
 * Type a command line and wait for `output` and the next prompt: busybox ash
 * can lose input typed while it runs a command (it sets its line editor up
 * again after), as a person waits for the prompt.
 */
async function typeLine(t: CallerPty, line: string, output: RegExp): Promise<void> {
  const at = t.text.length;
  t.type(`${line}\r`);
  const m = await t.waitFor(output, at);
  await t.waitFor(/# /, at + m.index + m[0].length);
  await Bun.sleep(100);
}

/** Host pids whose command line is exactly `cmd`. */
function pidsRunning(cmd: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ") === cmd) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await Bun.sleep(50);
  }
}

rootTest(
  "exec -it web sh is a working shell: the pod's own terminal, its size and a resize, Ctrl-C, the exit status, raw mode put back",
  async () => {
    const t = shell();
    try {
      await until("the caller's terminal is raw", () => t.isRaw());
      // The shell's terminal is the pod's: /dev/pts/0 of its own devpts, of the caller's size.
      await typeLine(t, "tty; stty size; echo sum=$((6*7))", /\/dev\/pts\/0\s+30 100\s+sum=42/);
      // A resize of the caller's terminal reaches the pod's.
      t.resize({ rows: 50, cols: 132 });
      await Bun.sleep(300);
      await typeLine(t, "stty size", /\n50 132\r*\n/);
      // Ctrl-C ends the foreground job, not the shell.
      t.type("sleep 888\r");
      await until("sleep 888 runs in the pod", () => pidsRunning("sleep 888").length === 1);
      const at = t.text.length;
      t.type("\x03");
      await until("sleep 888 is gone", () => pidsRunning("sleep 888").length === 0);
      await t.waitFor(/# /, at);
      await Bun.sleep(200);
      await typeLine(t, "echo status=$?", /status=130/);
      t.type("exit 3\r");
      expect(await t.proc.exited).toBe(3);
      expect(t.isRaw()).toBe(false);
    } finally {
      await t.close();
    }
  },
  T,
);

rootTest(
  "Ctrl-D on an empty line ends the shell with status 0; Ctrl-C ends a command run without a shell (130); a signal comes back as 128+N",
  async () => {
    const t = shell();
    try {
      await until("the caller's terminal is raw", () => t.isRaw());
      await typeLine(t, "echo ready", /\nready\r*\n/);
      t.type("\x04");
      expect(await t.proc.exited).toBe(0);
      expect(t.isRaw()).toBe(false);
    } finally {
      await t.close();
    }
    const k = new CallerPty(
      [...autopodArgv(), "exec", "-it", "web", "--", "sh", "-c", "kill -TERM $$"],
      { ...process.env, ...host.env },
      { rows: 24, cols: 80 },
    );
    try {
      expect(await k.proc.exited).toBe(128 + 15);
      expect(k.isRaw()).toBe(false);
    } finally {
      await k.close();
    }
  },
  T,
);

rootTest(
  "a caller that goes away ends the session in the pod; one ended by SIGTERM puts its terminal back first",
  async () => {
    for (const signal of ["SIGKILL", "SIGTERM", "SIGHUP"] as const) {
      const t = shell();
      try {
        await until("the caller's terminal is raw", () => t.isRaw());
        t.type("sleep 777\r");
        await until("sleep 777 runs in the pod", () => pidsRunning("sleep 777").length === 1);
        t.proc.kill(signal);
        await t.proc.exited;
        expect(t.proc.signalCode).toBe(signal);
        if (signal !== "SIGKILL") expect(t.isRaw()).toBe(false);
        await until("sleep 777 is gone from the pod", () => pidsRunning("sleep 777").length === 0);
      } finally {
        await t.close();
      }
    }
    expect((await host.pod("web")).state).toBe("running");
  },
  T,
);

rootTest(
  "exec -i without a terminal: stdin streams to the command and its end is the command's end of input",
  async () => {
    const p = Bun.spawn([...autopodArgv(), "exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z; echo done"], {
      env: { ...process.env, ...host.env },
      stdin: new Blob(["hello pod\n"]),
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await p.exited).toBe(0);
    expect(await new Response(p.stdout).text()).toBe("HELLO POD\ndone\n");
    // Without -i the command's stdin stays /dev/null, as before.
    const q = await host.cli(["exec", "web", "--", "sh", "-c", "cat; echo end"]);
    expect(q.stdout).toBe("end\n");
  },
  T,
);
