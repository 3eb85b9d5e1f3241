/**
 * A bare Debian host for the air-gapped install test and bench: a minbase root (scripts/make-bare-rootfs.sh: no
 * compiler, no -dev package, no CRIU), used through an overlay so the cached root stays as built, entered with
 * pivot_root in new mount, pid and network namespaces (the network has only lo: nothing can be downloaded).
 * A script runs there as root; what it leaves in /root/out comes back.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO } from "./_support.ts";

export type Suite = "bookworm" | "trixie";

/** The cached bare root of a Debian release, built when missing (about 1.5 min; scripts/test.sh builds both in CI). */
export function bareRoot(suite: Suite): string {
  const dir = join(REPO, `.cache/bare-${suite}`);
  const r = Bun.spawnSync(["bash", join(REPO, "scripts/make-bare-rootfs.sh"), suite, dir], { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0 || !existsSync(join(dir, ".autopod-bare"))) throw new Error(`scripts/make-bare-rootfs.sh ${suite} ${dir} failed`);
  return dir;
}

export interface BareRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The files the script left in /root/out, by name. */
  out: Record<string, string>;
}

/**
 * Run `script` (sh) as / of a fresh overlay of `root`, with `copies` ([host path, path in the root]) copied in first.
 * Nothing of it outlives the call: the pid namespace ends every process, the mount namespace every mount.
 */
export async function onBareRoot(
  root: string,
  script: string,
  copies: Array<[string, string]>,
  opts: { podRoot?: string; timeoutMs?: number } = {},
): Promise<BareRun> {
  const work = mkdtempSync(join(tmpdir(), "autopod-bare-"));
  try {
    writeFileSync(join(work, "inner.sh"), script);
    const outer = `
set -eu
root=$1 w=$2; shift 2
mkdir -p "$w/upper" "$w/work" "$w/m"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$w/upper,workdir=$w/work" "$w/m"
m=$w/m
mkdir -p "$m/root/out"
cp "$w/inner.sh" "$m/root/inner.sh"
while [ $# -ge 2 ]; do mkdir -p "$m$(dirname "$2")"; cp -a "$1" "$m$2"; shift 2; done
# The state directory on the real file system: a pod's root is an overlay, whose upper directory cannot be on one.
mkdir -p "$w/state" "$m/var/lib/autopod"
mount --bind "$w/state" "$m/var/lib/autopod"
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
mount --rbind /dev "$m/dev"
mount --rbind /sys "$m/sys"
# Pods' roots are overlays with this as their lower layer, which must not be on an overlay itself (the bare root is one):
# a read-only bind of the host's directory, at /srv/podroot.
if [ -n "$POD_ROOT" ]; then mkdir -p "$m/srv/podroot" && mount --bind "$POD_ROOT" "$m/srv/podroot" && mount -o remount,bind,ro "$m/srv/podroot"; fi
ip link set lo up
cd "$m"
mkdir -p .oldroot
pivot_root . .oldroot
exec chroot . /bin/sh -c 'mount -t proc proc /proc && umount -l /.oldroot && rmdir /.oldroot && cd /root && exec /bin/sh /root/inner.sh'
`;
    const argv = ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private", "--", "bash", "-c", outer, "bare", root, work];
    for (const [from, to] of copies) argv.push(from, to);
    const p = Bun.spawn(argv, {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", POD_ROOT: opts.podRoot ?? "" },
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 240_000);
    const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    clearTimeout(timer);
    const outDir = join(work, "upper/root/out");
    const out: Record<string, string> = {};
    if (existsSync(outDir)) for (const name of readdirSync(outDir)) out[name] = readFileSync(join(outDir, name), "utf8");
    return { exitCode, stdout, stderr, out };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Run on the bare root: install, doctor, an agent, a counting pod, checkpoint, restore; then doctor without ip and nft.
 * Outputs in /root/out; "step" names the last step begun. With BARE_ONLY_INSTALL=1 set first, it stops after doctor.
 */
export const BARE_SCRIPT = `
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
step() { echo "$1" > /root/out/step; }
step install
t0=$(date +%s%N)
sh /root/install.sh --from-file /root/autopod > /root/out/install.log 2>&1 || exit 1
autopod doctor --json > /root/out/doctor.json
echo $? > /root/out/doctor.rc
t1=$(date +%s%N)
echo $(( (t1 - t0) / 1000000 )) > /root/out/install-to-doctor.ms
[ "$(cat /root/out/doctor.rc)" = 0 ] || exit 1
[ -n "\${BARE_ONLY_INSTALL:-}" ] && exit 0
step agent
autopod agent > /root/out/agent.log 2>&1 &
i=0
until autopod ps > /dev/null 2>&1; do i=$((i + 1)); [ $i -lt 300 ] || exit 1; sleep 0.1; done
step run
autopod run count --rootfs /srv/podroot -- sh -c 'i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.02; done' > /root/out/run.log 2>&1 || exit 1
sleep 1
autopod exec count -- cat /counter > /root/out/counter-before-checkpoint 2>&1
step checkpoint
autopod checkpoint count > /root/out/checkpoint.id 2> /root/out/checkpoint.err || exit 1
sleep 0.5
step restore
autopod restore "$(cat /root/out/checkpoint.id)" > /root/out/restore.log 2>&1 || exit 1
sleep 1
step exec
autopod exec count -- cat /counter > /root/out/counter 2> /root/out/exec.err || exit 1
autopod rm --force count > /dev/null 2>&1
step missing-tools
command -v ip > /dev/null && command -v nft > /dev/null || exit 1
mkdir /root/hidden
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for t in ip nft; do
    if [ -e "$d/$t" ] || [ -L "$d/$t" ]; then mv "$d/$t" "/root/hidden/$(echo "$d" | tr / _)-$t"; fi
  done
done
autopod doctor --json > /root/out/doctor-without-tools.json
echo $? > /root/out/doctor-without-tools.rc
step done
`;
