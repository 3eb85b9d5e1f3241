/**
 * The guard of a post-copy copy: a process beside the destination agent
 * that acts when the agent dies while the copy runs without all its pages.
 *
 * A post-copy copy runs on the destination before its memory has arrived:
 * its `criu lazy-pages` daemon and the page link live in the agent. If the
 * agent dies, the daemon goes with it, the copy's missing pages would read as
 * zeros, and the source, hearing nothing, resumes its own stopped copy
 * (PULL_SILENT_MS): two copies, one of them corrupt, both reachable. The
 * guard closes that window. The agent holds the write end of the guard's
 * stdin; the kernel closes it when the agent dies, however it dies.
 *
 * Lines on stdin: "pulled" (every page arrived: the copy is whole, its fate
 * is the source's commit) and "release" (the agent settled the copy: the
 * guard leaves). At end of input without "release":
 * - pages still missing: the copy's pid 1 is SIGKILLed through a pidfd
 *   (never another process that took its pid), and the pid namespace with it;
 * - all pages here: its network is locked, so it is not reachable while the
 *   restarted agent asks the source whether it committed (recovery.ts).
 */
import { isAbsolute, normalize } from "node:path";
import { selfArgv } from "../platform/linux/launcher.ts";
import { pidfdOpen, pidfdSendSignal } from "../platform/linux/libc.ts";
import { lockNetwork } from "../platform/linux/netlock.ts";

const SIGKILL = 9;
const READY_MS = 15_000;

/** Lines of stdin, as they come; ends with the input. */
async function* stdinLines(): AsyncGenerator<string> {
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of Bun.stdin.stream()) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      yield buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
    }
  }
}

/**
 * The guard's own side (`autopod __migration-guard PID NETNS`); returns its exit code. With "-" alone:
 * started before the copy exists (MigrationGuard.prepare), the guard waits for a line "pid PID NETNS"
 * first; a "release" or the end of input before it ends the guard (nothing was armed).
 */
export async function migrationGuard(argv: string[]): Promise<number> {
  const lines = stdinLines();
  const isLater = argv.length === 1 && argv[0] === "-";
  let [pidArg, netns] = argv;
  if (isLater) {
    const first = await lines.next();
    if (first.done || first.value === "release") return 0;
    [pidArg, netns] = /^pid (\S+) (\S+)$/.exec(first.value)?.slice(1) ?? [];
  }
  const pid = Number(pidArg);
  if (!isPid(pid) || !netns || !isAbsolute(netns) || normalize(netns) !== netns) {
    process.stderr.write('usage: autopod __migration-guard PID NETNS_PATH, or - and a line "pid PID NETNS_PATH" (started by the agent)\n');
    return 2;
  }
  const pidfd = pidfdOpen(pid);
  if (pidfd === null) {
    process.stdout.write("gone\n");
    return 1;
  }
  process.stdout.write("armed\n");
  let isPulled = false;
  for await (const line of lines) {
    if (line === "release") return 0;
    if (line === "pulled") isPulled = true;
  }
  // The agent is gone without settling the copy.
  if (!isPulled) {
    pidfdSendSignal(pidfd, SIGKILL);
    process.stderr.write(`autopod guard: the agent died while pod pid ${pid} lacked pages: killed it\n`);
    return 0;
  }
  await lockNetwork(netns).catch((e: unknown) => process.stderr.write(`autopod guard: could not lock ${netns}: ${String(e)}\n`));
  process.stderr.write(`autopod guard: the agent died before the source's commit: locked pod pid ${pid}'s network\n`);
  return 0;
}

function isPid(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 2;
}

/** The agent's handle on a guard it started. */
export class MigrationGuard {
  readonly #proc: Bun.Subprocess<"pipe", "pipe", "inherit">;
  #isReleased = false;

  private constructor(proc: Bun.Subprocess<"pipe", "pipe", "inherit">) {
    this.#proc = proc;
  }

  /** Starts a guard over the copy whose pid 1 is `pid` and answers once it holds a pidfd on it. */
  static async start(pid: number, netnsPath: string): Promise<MigrationGuard> {
    const proc = Bun.spawn([...selfArgv(), "__migration-guard", String(pid), netnsPath], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    const guard = new MigrationGuard(proc);
    await guard.#armed();
    return guard;
  }

  /**
   * Starts a guard before its copy exists (its process start is then not in the freeze); arm() gives it
   * the copy's pid. Released before that, or the agent gone, it ends having guarded nothing.
   */
  static prepare(): MigrationGuard {
    return new MigrationGuard(Bun.spawn([...selfArgv(), "__migration-guard", "-"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" }));
  }

  /** A prepared guard takes the copy whose pid 1 is `pid` (its net namespace at `netnsPath`): answers once it holds a pidfd on it. */
  async arm(pid: number, netnsPath: string): Promise<void> {
    if (!isPid(pid) || !isAbsolute(netnsPath) || /\s/.test(netnsPath)) throw new Error(`Cannot guard pid "${pid}" in "${netnsPath}"`);
    this.#say(`pid ${pid} ${netnsPath}\n`);
    await this.#armed();
  }

  async #armed(): Promise<void> {
    const proc = this.#proc;
    const reader = proc.stdout.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const first = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the copy's guard did not start within ${READY_MS} ms`)), READY_MS);
        }),
      ]);
      const said = first.done ? "" : new TextDecoder().decode(first.value).trim();
      if (said !== "armed") throw new Error(`the copy's guard did not start (it said "${said}")`);
    } catch (e) {
      proc.kill(SIGKILL);
      throw e;
    } finally {
      clearTimeout(timer);
      reader.releaseLock();
    }
  }

  /** Every page arrived: from now on the guard isolates the copy rather than kill it. */
  pulled(): void {
    this.#say("pulled\n");
  }

  /** The agent settled the copy (committed, or killed it itself): the guard leaves. */
  release(): void {
    if (this.#isReleased) return;
    this.#isReleased = true;
    this.#say("release\n");
    void this.#proc.stdin.end();
  }

  #say(line: string): void {
    try {
      this.#proc.stdin.write(line);
      void this.#proc.stdin.flush();
    } catch {
      // A guard that died itself: the agent is alive and still settles the copy.
    }
  }
}
