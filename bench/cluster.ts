#!/usr/bin/env bun
/**
 * Figures of images moving between cluster hosts, as JSON on stdout:
 *   node_modules/.bin/bun bench/cluster.ts [--mib 1024] [--rate 1gbit] [--only move|push]
 * (root; uses dist/autopod: run `node_modules/.bin/bun build.ts` first).
 *
 * Two hosts (network namespaces with their own agents) on one LAN bridge,
 * both uplinks shaped with `tc tbf` to --rate. A pod of `memhog MIB` on host
 * a is checkpointed (--leave-running), then:
 * - the link itself: the image's export file copied over one plain TCP
 *   connection between the two namespaces (Bun sockets; there is no sshd here
 *   for scp), as the rate the link gives one stream;
 * - `image push` of that image to the empty peer: throughput ÷ the link rate,
 *   and ÷ the plain TCP copy;
 * - after 1% of the pod's pages changed (memhog's SIGUSR1), the next image
 *   pushed: bytes on the wire ÷ bytes changed;
 * - "which of these do you lack?" for 262,144 hashes, over the wire (mutual
 *   TLS from host a's namespace with its certificate);
 * - a stop-and-copy move (the hosts are in the routed pod network): a pod of
 *   `memhog MIB` beside an echo server, with a client on the LAN sending a
 *   line every millisecond, is checkpointed on a, pushed to b and restored
 *   there at the same address: the longest gap between two echoes the client
 *   saw, and the time of each step. (--only move measures just this.)
 * - (--only restore, alone) a restore of a pushed image against a local
 *   restore of the same image: a pod of `memhog MIB` checkpointed on a,
 *   pushed to b, restored on b, removed there, then restored on a; each
 *   restore's time and phases.
 * - `image pull` of the first image back to a, after a removed it (and its
 *   chunks): throughput ÷ the link rate. (--only push measures the link,
 *   the push and the pull, and nothing after.) Push and pull figures carry
 *   the CPU the sending and receiving agents spent (all threads, and the
 *   main thread that serves requests).
 * Everything made is removed at the end.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "../test/_cluster.ts";
import type { TestHost } from "../test/_pods.ts";
import { sh } from "../test/_pods.ts";
import { BUN, DIST, REPO } from "../test/_support.ts";
import { round } from "./_stats.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const MIB = Number(arg("mib", "1024"));
const RATE = arg("rate", "1gbit");
const RATE_BYTES_PER_S = parseRate(RATE) / 8;
const ONLY = arg("only", "");
if (ONLY !== "" && ONLY !== "move" && ONLY !== "restore" && ONLY !== "push") {
  console.error(`--only ${ONLY}: expected "move", "restore" or "push"`);
  process.exit(1);
}

if (process.getuid?.() !== 0) {
  console.error("bench/cluster.ts needs root (namespaces, mounts, CRIU)");
  process.exit(1);
}
if (!existsSync(DIST)) {
  console.error(`${DIST} is missing: run \`node_modules/.bin/bun build.ts\` first`);
  process.exit(1);
}

function parseRate(r: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(r);
  if (!m) throw new Error(`--rate ${r}: expected like 1gbit or 400mbit`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9, "": 1 }[(m[2] ?? "").toLowerCase() as "k" | "m" | "g" | ""];
}

async function memhogReady(h: TestHost, pod: string): Promise<void> {
  await h.waitForLog(pod, /ready/, 0, 120_000);
}

/** Copy `file` from host a's namespace to host b's over one TCP connection; returns bytes per second. */
async function plainTcpCopy(lan: TestCluster, file: string): Promise<number> {
  const port = 7600 + Math.floor(Math.random() * 300);
  const server = `
    let got = 0; let t0 = 0;
    Bun.listen({ hostname: process.argv[1], port: Number(process.argv[2]), socket: {
      open() { t0 = performance.now(); },
      data(_s, d) { got += d.byteLength; },
      close() { console.log(JSON.stringify({ bytes: got, ms: performance.now() - t0 })); process.exit(0); },
    } });`;
  const srv = Bun.spawn(["nsenter", `--net=/run/netns/${lan.hosts[1]!.netns}`, "--", BUN, "-e", server, lan.addressOf(1), String(port)], { stdout: "pipe" });
  await Bun.sleep(500);
  const client = `
    const f = Bun.file(process.argv[3]);
    const s = await Bun.connect({ hostname: process.argv[1], port: Number(process.argv[2]), socket: { data() {}, drain() {} } });
    const reader = f.stream().getReader();
    for (;;) { const { value, done } = await reader.read(); if (done) break;
      let off = 0; while (off < value.byteLength) { const n = s.write(value.subarray(off)); off += n; if (off < value.byteLength) await Bun.sleep(1); } }
    s.end();`;
  await sh(["nsenter", `--net=/run/netns/${lan.hosts[0]!.netns}`, "--", BUN, "-e", client, lan.addressOf(1), String(port), file], { timeoutMs: 600_000 });
  const out = JSON.parse((await new Response(srv.stdout).text()).trim()) as { bytes: number; ms: number };
  return (out.bytes / out.ms) * 1000;
}

/** Time one "which do you lack?" of `n` random hashes, from host a's namespace with its certificate. */
async function missingOverTheWire(lan: TestCluster, n: number): Promise<number> {
  const tls = join(lan.hosts[0]!.stateDir, "tls");
  const script = `
    const [url, dir, n] = [process.argv[1], process.argv[2], Number(process.argv[3])];
    const tls = { ca: await Bun.file(dir + "/ca.pem").text(), cert: await Bun.file(dir + "/host.pem").text(), key: await Bun.file(dir + "/host.key").text(), checkServerIdentity: () => undefined };
    const body = new Uint8Array(n * 32);
    for (let i = 0; i < body.byteLength; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
    const runs = [];
    for (let r = 0; r < 3; r++) {
      const t = performance.now();
      const res = await fetch(url + "/v1/chunks/missing", { method: "POST", body, tls, headers: { "content-type": "application/octet-stream" } });
      const bits = new Uint8Array(await res.arrayBuffer());
      if (res.status !== 200 || bits.byteLength !== n / 8) throw new Error("bad answer " + res.status);
      runs.push(performance.now() - t);
    }
    console.log(JSON.stringify(runs));`;
  const r = await sh(["nsenter", `--net=/run/netns/${lan.hosts[0]!.netns}`, "--", BUN, "-e", script, lan.urlOf(1), tls, String(n)], { timeoutMs: 300_000 });
  if (r.exitCode !== 0) throw new Error(`missing over the wire: ${r.stderr}`);
  const runs = JSON.parse(r.stdout.trim()) as number[];
  return Math.min(...runs);
}

/**
 * A pod of `memhog mib` with an echo server (busybox nc) on a, a LAN client
 * sending a line every millisecond; checkpoint on a, push to b, restore
 * there: the client's longest gap between echoes, and each step's time.
 */
async function stopAndCopyMove(lan: TestCluster, mib: number): Promise<Record<string, unknown>> {
  const [a, b] = lan.hosts as [TestHost, TestHost];
  const pod = await a.run("mover", ["sh", "-c", `/usr/local/bin/memhog ${mib} & exec nc -ll -p 7000 -e cat`], ["--memory", `${mib + 256}m`]);
  await memhogReady(a, "mover");
  const ip = pod.address.split("/")[0]!;
  const client = Bun.spawn(["nsenter", `--net=/run/netns/${lan.client}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    await Bun.sleep(2000);
    const t0 = performance.now();
    const id = await a.ok(["checkpoint", "mover"], 600_000);
    const t1 = performance.now();
    const push = JSON.parse(await a.ok(["image", "push", id, "--to", "b", "--json"], 900_000));
    const t2 = performance.now();
    await b.ok(["restore", id], 600_000);
    const t3 = performance.now();
    // The client resumes at its next retransmission, which may be seconds after the restore.
    await b.waitForState("mover", /running/);
    for (let i = 0; i < 600; i++) await Bun.sleep(100);
    client.kill("SIGTERM");
    const report = JSON.parse((await new Response(client.stdout).text()).trim()) as {
      sent: number;
      received: number;
      closed: boolean;
      errors: string[];
      maxGapMs: number;
    };
    return {
      podMiB: mib,
      longestGapMs: report.maxGapMs,
      checkpointMs: Math.round(t1 - t0),
      pushMs: Math.round(t2 - t1),
      pushWireBytes: push.wireBytes,
      restoreMs: Math.round(t3 - t2),
      stepsTotalMs: Math.round(t3 - t0),
      connectionKept: !report.closed && report.errors.length === 0 && report.received === report.sent,
      sent: report.sent,
      received: report.received,
      errors: report.errors,
    };
  } finally {
    client.kill("SIGTERM");
    await b.cli(["rm", "--force", "mover"]);
    await a.cli(["rm", "--force", "mover"]);
  }
}

/** A restore of a pushed image on b against a local restore of the same image on a. */
async function receivedVersusLocalRestore(lan: TestCluster, mib: number): Promise<Record<string, unknown>> {
  const [a, b] = lan.hosts as [TestHost, TestHost];
  await a.run("hog", ["/usr/local/bin/memhog", String(mib)], ["--memory", `${mib + 256}m`]);
  await memhogReady(a, "hog");
  const id = await a.ok(["checkpoint", "hog"], 600_000);
  const push = JSON.parse(await a.ok(["image", "push", id, "--to", "b", "--json"], 900_000));
  const out: Record<string, unknown> = { podMiB: mib, pushMs: push.ms };
  for (const [name, h] of [
    ["received", b],
    ["local", a],
  ] as const) {
    const r = JSON.parse(await h.ok(["restore", id, "--json"], 600_000));
    out[name] = { totalMs: r.totalMs, phases: r.phases };
    await h.ok(["rm", "--force", "hog"]);
  }
  return out;
}

const lan = await TestCluster.start("bc", ["a", "b"], { routed: true });
try {
  const [a] = lan.hosts as [TestHost, TestHost];
  await lan.formCluster("bench", ["a", "b"]);
  await lan.shape(0, RATE);
  await lan.shape(1, RATE);
  if (ONLY === "restore") {
    console.log(JSON.stringify({ rate: RATE, restore: await receivedVersusLocalRestore(lan, MIB), loadAverage: loadAverage() }, null, 2));
  } else if (ONLY === "move") {
    console.log(JSON.stringify({ rate: RATE, stopAndCopyMove: await stopAndCopyMove(lan, MIB), loadAverage: loadAverage() }, null, 2));
  } else {
    await a.run("hog", ["/usr/local/bin/memhog", String(MIB)], ["--memory", `${MIB + 256}m`]);
    await memhogReady(a, "hog");
    const id = await a.ok(["checkpoint", "hog", "--leave-running"], 600_000);
    const exportFile = join(lan.dir, "hog.img");
    await a.ok(["image", "export", id, exportFile], 600_000);
    const exportBytes = statSync(exportFile).size;

    const tcp = await plainTcpCopy(lan, exportFile);
    const push = await withAgentCpu([a, lan.hosts[1]!], async () => JSON.parse(await a.ok(["image", "push", id, "--to", "b", "--json"], 900_000)));
    const pushRate = (push.wireBytes / push.ms) * 1000;
    const pushFigures = {
      ...push,
      bytesPerSecond: round(pushRate, 0),
      ofLinkRate: round(pushRate / RATE_BYTES_PER_S, 3),
      ofPlainTcp: round(pushRate / tcp, 3),
      exportFileBytes: exportBytes,
    };
    const linkFigures = {
      rate: RATE,
      bytesPerSecond: RATE_BYTES_PER_S,
      plainTcpBytesPerSecond: round(tcp, 0),
      plainTcpOfLink: round(tcp / RATE_BYTES_PER_S, 3),
    };
    if (ONLY === "push") {
      // Pull the image back into a store that lost it (the pod's next images are not needed here).
      await a.ok(["rm", "--force", "hog"]);
      await a.ok(["image", "rm", id]);
      await a.ok(["image", "gc"]);
      const pull = await withAgentCpu([lan.hosts[1]!, a], async () => JSON.parse(await a.ok(["image", "pull", id, "--from", "b", "--json"], 900_000)));
      const pullRate = (pull.wireBytes / pull.ms) * 1000;
      const pullFigures = {
        ...pull,
        bytesPerSecond: round(pullRate, 0),
        ofLinkRate: round(pullRate / RATE_BYTES_PER_S, 3),
        ofPlainTcp: round(pullRate / tcp, 3),
      };
      console.log(JSON.stringify({ mib: MIB, link: linkFigures, push: pushFigures, pull: pullFigures, loadAverage: loadAverage() }, null, 2));
      process.exitCode = 0;
    } else {
      process.kill((await a.pod("hog")).pid!, "SIGUSR1");
      await Bun.sleep(500);
      const changedPages = Math.round(((MIB * 2 ** 20) / 4096) * 0.01);
      const id2 = await a.ok(["checkpoint", "hog", "--leave-running"], 600_000);
      const next = JSON.parse(await a.ok(["image", "push", id2, "--to", "b", "--json"], 900_000));

      const missingMs = await missingOverTheWire(lan, 262_144);
      await a.ok(["rm", "--force", "hog"]); // one big pod at a time
      const move = await stopAndCopyMove(lan, MIB);

      console.log(
        JSON.stringify(
          {
            mib: MIB,
            link: linkFigures,
            push: pushFigures,
            nextImage: {
              changedBytes: changedPages * 4096,
              wireBytes: next.wireBytes,
              bytesSent: next.bytesSent,
              chunksSent: next.chunksSent,
              wireOverChanged: round(next.wireBytes / (changedPages * 4096), 3),
              ms: next.ms,
            },
            missingOverTheWire: { hashes: 262_144, ms: round(missingMs, 1) },
            stopAndCopyMove: move,
            loadAverage: loadAverage(),
          },
          null,
          2,
        ),
      );
    }
  }
} finally {
  await lan.dispose();
}

/** CPU time (ms) of an agent: all its threads, and its main thread (the one that serves requests). */
function agentCpu(h: TestHost): { totalMs: number; mainMs: number } {
  const pid = h.agent!.pid;
  const ticks = (file: string) => {
    const f = readFileSync(file, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, in ticks of 10 ms
  };
  return { totalMs: ticks(`/proc/${pid}/stat`), mainMs: ticks(`/proc/${pid}/task/${pid}/stat`) };
}

/** Run `fn` and add the CPU its sender's and receiver's agents spent meanwhile. */
async function withAgentCpu<T extends object>([sender, receiver]: [TestHost, TestHost], fn: () => Promise<T>): Promise<T & { agentCpuMs: object }> {
  const s0 = agentCpu(sender);
  const r0 = agentCpu(receiver);
  const out = await fn();
  const s1 = agentCpu(sender);
  const r1 = agentCpu(receiver);
  return {
    ...out,
    agentCpuMs: {
      sender: { total: s1.totalMs - s0.totalMs, mainThread: s1.mainMs - s0.mainMs },
      receiver: { total: r1.totalMs - r0.totalMs, mainThread: r1.mainMs - r0.mainMs },
    },
  };
}

function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}
