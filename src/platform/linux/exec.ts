/**
 * The narrow runner every external program goes through: an argument array,
 * never a shell string; a timeout; captured output.
 */
export interface RunOptions {
  /** Kill the program after this many milliseconds (default 30 s). */
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  stdin?: string | Uint8Array;
  /** Kill the program (SIGKILL) when this aborts: an agent that stops waits for no query. */
  signal?: AbortSignal;
}

export interface RunResult {
  argv: string[];
  exitCode: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** The program could not be started at all (missing binary, permission). */
export class SpawnError extends Error {
  override name = "SpawnError";
  constructor(
    readonly argv: string[],
    cause: unknown,
  ) {
    super(`Cannot run "${argv[0]}": ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

export async function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  if (opts.signal?.aborted) throw new SpawnError(argv, new Error("it was cancelled"));
  let proc;
  try {
    proc = Bun.spawn(argv, {
      stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
      stdout: "pipe",
      stderr: "pipe",
      env: opts.env as Record<string, string> | undefined,
      cwd: opts.cwd,
    });
  } catch (e) {
    throw new SpawnError(argv, e);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? 30_000);
  const cancel = () => proc.kill("SIGKILL");
  opts.signal?.addEventListener("abort", cancel, { once: true });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).finally(() => {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", cancel);
  });
  return {
    argv,
    exitCode,
    signal: proc.signalCode === null || proc.signalCode === undefined ? null : String(proc.signalCode),
    stdout,
    stderr,
    timedOut,
    durationMs: performance.now() - started,
  };
}

/** Find a program on PATH plus the sbin directories root's PATH may lack. */
export function which(name: string, extraDirs: string[] = ["/usr/local/sbin", "/usr/sbin", "/sbin"]): string | null {
  const path = [...(process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":"), ...extraDirs].join(":");
  return Bun.which(name, { PATH: path });
}
