/**
 * What the migration and evacuation tests share: failpoints set through an
 * agent's debug API, polling, the streaming TCP client in the cluster's
 * client namespace, and the counter check.
 */
import { join } from "node:path";
import type { FailpointName } from "../src/debug/failpoints.ts";
import type { TestHost } from "./_pods.ts";
import { BUN, REPO } from "./_support.ts";

export async function setFailpoint(h: TestHost, name: FailpointName, actions: string): Promise<void> {
  const r = await fetch(`http://agent/v1/debug/failpoints/${name}`, { unix: h.socket, method: "PUT", body: JSON.stringify({ actions }) });
  if (!r.ok) throw new Error(`Cannot set failpoint ${name}=${actions}: ${await r.text()}`);
}

/** How many times the agent reached the failpoint. */
export async function hitsOf(h: TestHost, name: FailpointName): Promise<number> {
  const r = await fetch("http://agent/v1/debug/failpoints", { unix: h.socket });
  const { failpoints } = (await r.json()) as { failpoints: Array<{ name: string; hits: number }> };
  return failpoints.find((p) => p.name === name)?.hits ?? 0;
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await Bun.sleep(250);
  }
}

/** test/fixtures/tcp-client.ts in the client namespace: a numbered line every millisecond to ip:7000, each echo checked. */
export function startClient(clientNetns: string, ip: string) {
  return Bun.spawn(["nsenter", `--net=/run/netns/${clientNetns}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** Stops the client and reads what it saw. */
export async function clientReport(client: ReturnType<typeof startClient>) {
  client.kill("SIGTERM");
  if (process.env.MIGRATE_DEBUG) console.error("client:", await new Response(client.stderr).text());
  return JSON.parse((await new Response(client.stdout).text()).trim()) as {
    sent: number;
    received: number;
    closed: boolean;
    errors: string[];
    maxGapMs: number;
  };
}

/** The counter's file has 1..n, each once, in order; answers n. */
export function expectCountWithoutGap(text: string): number {
  const lines = text.trim().split("\n").map(Number);
  lines.forEach((n, i) => {
    if (n !== i + 1) throw new Error(`/count line ${i + 1} is ${n}`);
  });
  return lines.length;
}
