import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./load.ts";
import { ConfigSchema } from "./schema.ts";

const dir = mkdtempSync(join(tmpdir(), "autopod-config-"));
const missing = join(dir, "none.toml");

describe("loadConfig", () => {
  test("defaults when there is no file", async () => {
    const { config, fileFound } = await loadConfig({ path: undefined, env: { AUTOPOD_CONFIG: undefined } as unknown as NodeJS.ProcessEnv });
    expect(fileFound === true || fileFound === false).toBe(true);
    expect(config.network.bridge.length).toBeGreaterThan(0);
  });
  test("file, then env, then flags", async () => {
    const p = join(dir, "a.toml");
    writeFileSync(p, 'state_dir = "/srv/a"\nlog_level = "warn"\n[network]\nbridge = "br-file"\nsubnet = "10.213.7.0/24"\n');
    const { config, origins } = await loadConfig({
      path: p,
      env: { AUTOPOD_NETWORK_BRIDGE: "br-env", AUTOPOD_STATUS_REFRESH_SECONDS: "120" },
      flags: { state_dir: "/srv/flag" },
    });
    expect(config.state_dir).toBe("/srv/flag");
    expect(config.log_level).toBe("warn");
    expect(config.network.bridge).toBe("br-env");
    expect(config.network.subnet).toBe("10.213.7.0/24");
    expect(config.status.refresh_seconds).toBe(120);
    expect(origins["network.bridge"]).toBe("env");
    expect(origins.state_dir).toBe("flag");
  });
  test("a bad value names the key, the value and what was expected", async () => {
    await expect(loadConfig({ path: missing, env: {} })).rejects.toThrow(/does not exist/);
    const p = join(dir, "b.toml");
    writeFileSync(p, '[network]\nsubnet = "10.0.0.0/33"\n');
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/network.subnet = "10.0.0.0\/33" \(in .*b.toml\): expected an IPv4 subnet/);
    await expect(loadConfig({ path: p, env: { AUTOPOD_NETWORK_SUBNET: "10.213.1.0/24", AUTOPOD_LOG_LEVEL: "loud" } })).rejects.toThrow(
      /log_level = "loud" \(from AUTOPOD_LOG_LEVEL\): expected one of "debug"/,
    );
    await expect(loadConfig({ path: p, env: { AUTOPOD_NETWORK_SUBNET: "10.213.1.0/24", AUTOPOD_STATUS_REFRESH_SECONDS: "abc" } })).rejects.toThrow(
      /status.refresh_seconds = "abc" \(from AUTOPOD_STATUS_REFRESH_SECONDS\): expected a number/,
    );
  });
  test("unknown keys and broken TOML are errors", async () => {
    const p = join(dir, "c.toml");
    writeFileSync(p, "colour = 1\n");
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/unknown key "colour"/);
    writeFileSync(p, "state_dir = \n");
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/Cannot parse config file/);
  });
  test("relative or escaping paths are refused", async () => {
    await expect(loadConfig({ path: missing.replace("none", "x"), env: {} })).rejects.toThrow();
    const p = join(dir, "d.toml");
    writeFileSync(p, 'state_dir = "var/lib"\n');
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/state_dir = "var\/lib".*absolute path/);
  });
  test("the tuning keys: defaults, their AUTOPOD_<SECTION>_<KEY> names, and their older names as aliases", async () => {
    const path = join(dir, "empty.toml");
    writeFileSync(path, "");
    const { config: d } = await loadConfig({ path, env: {} });
    expect(d.store).toEqual({ hash_threads: 0, native_hash: true });
    expect(d.checkpoint).toEqual({ page_tail: true });

    const old = await loadConfig({ path, env: { AUTOPOD_HASH_THREADS: "3", AUTOPOD_NATIVE_HASH: "0", AUTOPOD_PAGE_TAIL: "0" } });
    expect(old.config.store).toEqual({ hash_threads: 3, native_hash: false });
    expect(old.config.checkpoint.page_tail).toBe(false);
    expect(old.origins["store.hash_threads"]).toBe("env");
    expect(old.envVars["store.hash_threads"]).toBe("AUTOPOD_HASH_THREADS");

    const both = await loadConfig({ path, env: { AUTOPOD_STORE_HASH_THREADS: "2", AUTOPOD_HASH_THREADS: "7", AUTOPOD_CHECKPOINT_PAGE_TAIL: "false" } });
    expect(both.config.store.hash_threads).toBe(2);
    expect(both.envVars["store.hash_threads"]).toBe("AUTOPOD_STORE_HASH_THREADS");
    expect(both.config.checkpoint.page_tail).toBe(false);

    await expect(loadConfig({ path, env: { AUTOPOD_HASH_THREADS: "many" } })).rejects.toThrow(
      /store.hash_threads = "many" \(from AUTOPOD_HASH_THREADS\): expected a number/,
    );
    await expect(loadConfig({ path, env: { AUTOPOD_NATIVE_HASH: "off" } })).rejects.toThrow(
      /store.native_hash = "off" \(from AUTOPOD_NATIVE_HASH\): expected a boolean/,
    );
  });
});

describe("network.mode", () => {
  test("routed needs the LAN interface and refuses NAT; bridge stays the default", async () => {
    const p = join(dir, "routed.toml");
    writeFileSync(p, '[network]\nmode = "routed"\nsubnet = "10.213.5.128/26"\nlan_interface = "lan0"\n');
    const { config } = await loadConfig({ path: p, env: {} });
    expect(config.network).toMatchObject({ mode: "routed", subnet: "10.213.5.128/26", lan_interface: "lan0" });
    expect(ConfigSchema.parse({}).network.mode).toBe("bridge");
    writeFileSync(p, '[network]\nmode = "routed"\n');
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/lan_interface.*routed mode needs the host's LAN interface/);
    writeFileSync(p, '[network]\nmode = "routed"\nlan_interface = "lan0"\nnat = true\n');
    await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(/nat is for bridge mode only/);
  });
});

describe("[policy]", () => {
  test("defaults: off, the security and reboot triggers, systemctl reboot, no lock, return home", () => {
    const p = ConfigSchema.parse({}).policy;
    expect(p).toMatchObject({ mode: "off", trigger: ["security", "reboot-required"], reboot_command: ["systemctl", "reboot"], return: true, window: [] });
    expect(p.lock).toMatchObject({ kind: "none", group: "default", slots: 1, ttl: 900 });
  });

  test("a full policy loads; nested keys come from the environment too", async () => {
    const p = join(dir, "policy.toml");
    writeFileSync(
      p,
      [
        "[policy]",
        'mode = "evacuate-update-reboot"',
        'trigger = ["security"]',
        'time_zone = "Europe/Berlin"',
        'update_command = ["/usr/bin/unattended-upgrade", "-v"]',
        'blockers = [["/usr/local/bin/db-busy"]]',
        "[[policy.window]]",
        'days = ["Sat", "Sunday"]',
        'start_time = "22:30"',
        "length_minutes = 120",
        "[policy.lock]",
        'kind = "etcd"',
        'endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]',
        "slots = 2",
      ].join("\n"),
    );
    const { config } = await loadConfig({ path: p, env: { AUTOPOD_POLICY_LOCK_GROUP: "workers" } });
    expect(config.policy.window).toEqual([{ days: ["Sat", "Sunday"], start_time: "22:30", length_minutes: 120 }]);
    expect(config.policy.lock).toMatchObject({ kind: "etcd", slots: 2, group: "workers" });
    expect(config.policy.update_command).toEqual(["/usr/bin/unattended-upgrade", "-v"]);
  });

  test("bad policies are clear errors at load", async () => {
    const p = join(dir, "bad-policy.toml");
    const bad = async (lines: string[], re: RegExp) => {
      writeFileSync(p, ["[policy]", ...lines].join("\n"));
      await expect(loadConfig({ path: p, env: {} })).rejects.toThrow(re);
    };
    await bad(['mode = "sometimes"'], /policy.mode = "sometimes" .*expected one of "off", "notify", "evacuate", "evacuate-update-reboot"/);
    await bad(['trigger = ["tuesdays"]'], /policy.trigger.0 = "tuesdays"/);
    await bad(
      ["[[policy.window]]", "days = []", 'start_time = "10:00"', "length_minutes = 5"],
      /policy.window.0.days = \[\].*at least one day: a window without days never opens/,
    );
    await bad(["[[policy.window]]", 'days = ["Mon"]', 'start_time = "10:00"', "length_minutes = 0"], /a window of no length never opens/);
    await bad(['time_zone = "Mars/Olympus"'], /policy.time_zone = "Mars\/Olympus".*a time zone of the tz database/);
    await bad(['update_command = "apt-get upgrade -y"'], /policy.update_command = "apt-get upgrade -y".*expected a array/);
    await bad(["[policy.lock]", 'kind = "etcd"'], /policy.lock.endpoints \(not set\): expected at least one endpoint URL for lock kind "etcd"/);
    await bad(["[policy.lock]", 'kind = "fleetlock"', 'endpoints = ["ftp://x"]'], /an http:\/\/ or https:\/\/ URL/);
  });
});
