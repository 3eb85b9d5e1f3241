import { expect, test } from "bun:test";
import { InvalidArgumentError } from "../errors.ts";
import { formatUptime } from "./ps.ts";
import { parseCpuBaseline, parseEnv, parseVolume } from "./run.ts";

test("volumes: HOST:POD[:ro], host made absolute from the caller's directory", () => {
  expect(parseVolume("/srv/data:/data", "/home/me")).toEqual({ host: "/srv/data", pod: "/data", readonly: false });
  expect(parseVolume("data:/data:ro", "/home/me")).toEqual({ host: "/home/me/data", pod: "/data", readonly: true });
  expect(parseVolume("./d:/d:rw", "/x")).toEqual({ host: "/x/d", pod: "/d", readonly: false });
  for (const bad of ["/tmp", "/a:/b:rx", ":/b", "/a:", "/a:/b:ro:x"]) expect(() => parseVolume(bad, "/")).toThrow(InvalidArgumentError);
});

test("environment entries", () => {
  expect(parseEnv(["A=1", "B=x=y", "C="])).toEqual({ A: "1", B: "x=y", C: "" });
  expect(() => parseEnv(["=x"])).toThrow(/Invalid environment entry "=x"/);
  expect(() => parseEnv(["NOEQ"])).toThrow(InvalidArgumentError);
});

test("uptime", () => {
  expect(formatUptime(null)).toBe("-");
  expect(formatUptime(42)).toBe("42s");
  expect(formatUptime(185)).toBe("3m05s");
  expect(formatUptime(2 * 3600 + 7 * 60)).toBe("2h07m");
  expect(formatUptime(3 * 86400 + 4 * 3600)).toBe("3d04h");
});

test("--cpu-baseline: on or off", () => {
  expect(parseCpuBaseline(undefined)).toBeUndefined();
  expect(parseCpuBaseline("on")).toBe(true);
  expect(parseCpuBaseline("off")).toBe(false);
  expect(() => parseCpuBaseline("no")).toThrow('Invalid --cpu-baseline "no": expected on or off');
});
