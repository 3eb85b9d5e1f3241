import { describe, expect, test } from "bun:test";
import {
  bootTimeFromUptime,
  commandTarget,
  importedModules,
  inProcessRoot,
  interpreterOf,
  moduleFileNames,
  modulePath,
  parseEnviron,
  processStartSeconds,
  relativeImportBase,
} from "./interpreted-code.ts";

test("interpreterOf: by the executable's name", () => {
  expect(interpreterOf("/usr/bin/python3.11")).toBe("python");
  expect(interpreterOf("/usr/bin/python3.11 (deleted)")).toBe("python");
  expect(interpreterOf("/root/.pyenv/versions/3.11.7/bin/python3.11")).toBe("python");
  expect(interpreterOf("/usr/bin/perl")).toBe("perl");
  expect(interpreterOf("/usr/bin/perl5.36.0")).toBe("perl");
  expect(interpreterOf("/usr/bin/ruby3.1")).toBe("ruby");
  expect(interpreterOf("/usr/bin/python3-config")).toBeNull();
  expect(interpreterOf("/usr/bin/perlbug")).toBeNull();
  expect(interpreterOf("/usr/sbin/sshd")).toBeNull();
});

describe("commandTarget: what a command line runs", () => {
  const cases: Array<[string, string[], ReturnType<typeof commandTarget>]> = [
    ["a script", ["python3", "/usr/bin/svc"], { script: "/usr/bin/svc" }],
    ["options before the script", ["python3", "-u", "-B", "svc.py", "--port", "80"], { script: "svc.py" }],
    ["an option with its argument apart", ["python3", "-W", "ignore", "-X", "dev", "svc.py"], { script: "svc.py" }],
    ["an option with its argument joined", ["python3", "-Wignore", "svc.py"], { script: "svc.py" }],
    ["a module", ["python3", "-m", "http.server", "8000"], { module: "http.server" }],
    ["a module joined", ["python3", "-umhttp.server"], { module: "http.server" }],
    ["code on the command line", ["python3", "-c", "import time"], null],
    ["stdin", ["python3", "-"], null],
    ["an interactive shell", ["python3"], null],
    ["after --", ["python3", "--", "-svc.py"], { script: "-svc.py" }],
    ["perl -I dir", ["perl", "-I", "/opt/lib", "-w", "/usr/sbin/svc"], { script: "/usr/sbin/svc" }],
    ["perl -e", ["perl", "-e", "sleep 1"], null],
    ["perl -MMod", ["perl", "-MData::Dumper", "x.pl"], { script: "x.pl" }],
    ["ruby -r lib", ["ruby", "-r", "json", "app.rb"], { script: "app.rb" }],
  ];
  for (const [name, argv, want] of cases) test(name, () => expect(commandTarget(interpreterOf(argv[0]!)!, argv)).toEqual(want));
});

test("importedModules (Python): import lists, aliases, from-imports with their names, relative imports; comments", () => {
  const src = [
    "import os, sys as system",
    "import xml.etree.ElementTree as ET  # parse",
    "from json import loads, dumps",
    "from . import sibling",
    "from ..pkg.mod import (thing,",
    "    other)",
    "    import inner_indented",
    "# import commented",
    "importlib_is_not_import = 1",
  ].join("\n");
  expect(importedModules("python", src).sort()).toEqual(
    ["os", "sys", "xml.etree.ElementTree", "json", "json.loads", "json.dumps", ".", ".sibling", "..pkg.mod", "..pkg.mod.thing", "inner_indented"].sort(),
  );
});

test("importedModules (Perl): use and require of modules, not of versions", () => {
  expect(importedModules("perl", "use strict;\nuse Demo::Mod qw(x);\nrequire File::Temp;\nuse 5.010;\n")).toEqual(["strict", "Demo::Mod", "File::Temp"]);
});

test("moduleFileNames and relativeImportBase", () => {
  expect(moduleFileNames("python", "a.b")).toEqual(["a/b.py", "a/b/__init__.py"]);
  expect(moduleFileNames("perl", "Demo::Mod")).toEqual(["Demo/Mod.pm"]);
  expect(relativeImportBase(".sibling", "/usr/lib/x/pkg")).toEqual({ dir: "/usr/lib/x/pkg", rest: "sibling" });
  expect(relativeImportBase("..pkg.mod", "/usr/lib/x/pkg/sub")).toEqual({ dir: "/usr/lib/x/pkg", rest: "pkg.mod" });
  expect(relativeImportBase("os", "/x")).toBeNull();
});

test("modulePath: the script's directory, PYTHONPATH, then the installation's", () => {
  expect(modulePath("python", "/usr/bin/python3.11", { PYTHONPATH: "/opt/app:relative" }, "/srv/app")).toEqual([
    "/srv/app",
    "/opt/app",
    "/usr/lib/python3.11",
    "/usr/lib/python3.11/site-packages",
    "/usr/lib/python3.11/dist-packages",
    "/usr/local/lib/python3.11/dist-packages",
    "/usr/lib/python3/dist-packages",
  ]);
  expect(modulePath("python", "/root/.pyenv/versions/3.11.7/bin/python3.11", {}, null)).toContain("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages");
  expect(modulePath("perl", "/usr/bin/perl", { PERL5LIB: "/opt/perl" }, "/srv")).toEqual([
    "/opt/perl",
    "/etc/perl",
    "/usr/local/share/perl5",
    "/usr/share/perl5",
    "/srv",
  ]);
});

test("inProcessRoot: a path from a process never climbs out of its root", () => {
  expect(inProcessRoot("/proc/7/root", "/usr/lib/x.py")).toBe("/proc/7/root/usr/lib/x.py");
  expect(inProcessRoot("/proc/7/root", "/../../../etc/shadow")).toBe("/proc/7/root/etc/shadow");
  expect(inProcessRoot("/proc/7/root", "../../1/root/etc")).toBe("/proc/7/root/1/root/etc");
});

test("process start: /proc/PID/stat's starttime after the boot time; parseEnviron", () => {
  // A real /proc/PID/stat line (a comm with a space and parentheses), starttime 1234567 ticks.
  const stat =
    "4242 (my (odd) svc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 1234567 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
  expect(processStartSeconds(stat, 1_000_000)).toBeCloseTo(1_000_000 + 12345.67, 5);
  expect(bootTimeFromUptime("10620.55 20000.01\n", 1_764_520_000_000)).toBeCloseTo(1_764_520_000 - 10620.55, 5);
  expect(bootTimeFromUptime("", 1)).toBeNull();
  expect(parseEnviron("PATH=/usr/bin\0PYTHONPATH=/a:/b\0EMPTY=\0junk\0")).toEqual({ PATH: "/usr/bin", PYTHONPATH: "/a:/b", EMPTY: "" });
});
