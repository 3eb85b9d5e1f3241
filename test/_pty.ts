/**
 * A real terminal on the caller's side for tests: a pty pair of the host,
 * the program under test on its slave as the controlling terminal of a new
 * session (`setsid --ctty`), the test typing into the master and reading
 * what the terminal shows, resizing it, and reading its modes.
 */
import { closeSync, constants, openSync, readlinkSync, writeSync } from "node:fs";
import { addressOf, ioctl } from "../src/platform/linux/libc.ts";

const TIOCSPTLCK = 0x40045431;
const TIOCGPTPEER = 0x5441;
const TIOCSWINSZ = 0x5414;
const TCGETS = 0x5401;
const ICANON = 0o2;
const ECHO = 0o10;

export class CallerPty {
  readonly proc: ReturnType<typeof Bun.spawn>;
  #master: number;
  #slavePath: string;
  #text = "";
  #reading: Promise<void>;

  constructor(argv: string[], env: Record<string, string | undefined>, size: { rows: number; cols: number }) {
    this.#master = openSync("/dev/ptmx", constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK | 0o2000000);
    ioctl(this.#master, TIOCSPTLCK, addressOf(new Int32Array([0])), "TIOCSPTLCK");
    this.resize(size);
    const slave = ioctl(this.#master, TIOCGPTPEER, constants.O_RDWR | constants.O_NOCTTY | 0o2000000, "TIOCGPTPEER");
    this.#slavePath = readlinkSync(`/proc/self/fd/${slave}`);
    this.proc = Bun.spawn(["setsid", "--ctty", "--wait", ...argv], { stdio: [slave, slave, slave], env: env as Record<string, string> });
    closeSync(slave);
    const master = this.#master;
    this.#reading = (async () => {
      try {
        for await (const chunk of Bun.file(master).stream()) this.#text += new TextDecoder().decode(chunk);
      } catch {
        // EIO: the program and its session are gone
      }
    })();
  }

  /** Everything the terminal has shown so far. */
  get text(): string {
    return this.#text;
  }

  type(s: string): void {
    writeSync(this.#master, s);
  }

  /** Wait until what was shown after `from` matches; returns the match. */
  async waitFor(re: RegExp, from = 0, timeoutMs = 20_000, pollMs = 20): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.#text.slice(from));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`The terminal never showed ${re}; it shows: ${JSON.stringify(this.#text.slice(from).slice(-800))}`);
      await Bun.sleep(pollMs);
    }
  }

  /** The size the program reads on its next SIGWINCH (the kernel sends it to the foreground group). */
  resize(size: { rows: number; cols: number }): void {
    ioctl(this.#master, TIOCSWINSZ, addressOf(new Uint16Array([size.rows, size.cols, 0, 0])), "TIOCSWINSZ");
  }

  /** Whether the terminal is in raw mode now (no line editing, no echo), as a program's tcgetattr sees it. */
  isRaw(): boolean {
    const termios = new Uint32Array(16);
    ioctl(this.#master, TCGETS, addressOf(termios), "TCGETS");
    const lflag = termios[3]!;
    return (lflag & (ICANON | ECHO)) === 0;
  }

  get slavePath(): string {
    return this.#slavePath;
  }

  async close(): Promise<void> {
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // gone
    }
    await this.proc.exited;
    await Promise.race([this.#reading, Bun.sleep(2000)]);
    closeSync(this.#master);
  }
}
