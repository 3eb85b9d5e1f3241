import { describe, expect, test } from "bun:test";
import { parseArgs, type OptionSpec } from "./args.ts";

const specs: OptionSpec[] = [
  { name: "json", kind: "boolean", help: "" },
  { name: "rootfs", kind: "string", value: "DIR", help: "" },
  { name: "env", kind: "repeat", help: "" },
  { name: "follow", short: "f", kind: "boolean", help: "" },
  { name: "interactive", short: "i", kind: "boolean", help: "" },
  { name: "tty", short: "t", kind: "boolean", help: "" },
  { name: "volume", short: "v", kind: "repeat", help: "" },
];

describe("parseArgs", () => {
  test("flags, positionals and rest", () => {
    const p = parseArgs(["web", "--rootfs", "/r", "--env", "A=1", "--env=B=2", "-f", "--", "sh", "-c", "x"], specs);
    expect(p.positionals).toEqual(["web"]);
    expect(p.flags.rootfs).toBe("/r");
    expect(p.flags.env).toEqual(["A=1", "B=2"]);
    expect(p.flags.follow).toBe(true);
    expect(p.rest).toEqual(["sh", "-c", "x"]);
    expect(p.hasRest).toBe(true);
  });
  test("an option without its value is an error naming it", () => {
    expect(() => parseArgs(["--rootfs"], specs)).toThrow('Option "--rootfs" needs a value (DIR)');
    expect(() => parseArgs(["--rootfs", "--json"], specs)).toThrow("needs a value");
    expect(() => parseArgs(["--rootfs", "--"], specs)).toThrow("needs a value");
  });
  test("unknown options are errors", () => {
    expect(() => parseArgs(["--nope"], specs)).toThrow('Unknown option "--nope"');
    expect(() => parseArgs(["-x"], specs)).toThrow('Unknown option "-x"');
  });
  test("boolean with a value is an error", () => {
    expect(() => parseArgs(["--json=1"], specs)).toThrow("takes no value");
  });
  test("stopAfterPositionals leaves the command untouched", () => {
    const p = parseArgs(["web", "ls", "--json", "-l"], specs, { stopAfterPositionals: 1 });
    expect(p.positionals).toEqual(["web"]);
    expect(p.rest).toEqual(["ls", "--json", "-l"]);
  });
  test("short booleans run together, as `exec -it`; other words of that shape stay positionals", () => {
    const p = parseArgs(["-it", "web", "sh"], specs, { stopAfterPositionals: 1 });
    expect([p.flags.interactive, p.flags.tty, p.positionals, p.rest]).toEqual([true, true, ["web"], ["sh"]]);
    expect(parseArgs(["-iv", "x"], specs).positionals).toEqual(["-iv", "x"]);
    expect(parseArgs(["-web"], specs).positionals).toEqual(["-web"]);
  });
  test("a lone dash is a positional", () => {
    expect(parseArgs(["-"], specs).positionals).toEqual(["-"]);
  });
});
