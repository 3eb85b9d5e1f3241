/**
 * After an agent restart, before the pod runtime recovers: finish or undo
 * the checkpoints and restores that were running when the agent died, from
 * their journals (journal.ts). A checkpoint whose image was committed ends
 * checkpointed; any other leaves the pod running where it was. A restore that
 * CRIU finished is adopted; any other is undone, and the image is left to retry.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import { type CheckpointContext, unlockAll } from "./_context.ts";
import { CRIU_WORK, JOURNAL_DIR, type Journal, UNVERIFIED } from "./journal.ts";

/** Finish or undo every journalled checkpoint and restore; then clear the temporary directories. */
export async function recover(ctx: CheckpointContext): Promise<void> {
  const { pods, log, host } = ctx;
  const dir = join(ctx.stateDir, JOURNAL_DIR);
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".json")) continue;
    let j: Journal;
    try {
      j = JSON.parse(readFileSync(join(dir, f), "utf8"));
    } catch {
      rmSync(join(dir, f), { force: true });
      continue;
    }
    try {
      if (j.criuPid !== null) await host.killCriu(j.criuPid);
      const rec = pods.list().find((p) => p.name === j.pod);
      if (rec && j.kind === "checkpoint" && rec.phase === "checkpointing") await recoverCheckpoint(ctx, j);
      if (rec && j.kind === "restore" && rec.phase === "restoring") await recoverRestore(ctx, j);
    } catch (e) {
      log.error("could not recover an interrupted checkpoint or restore", { pod: j.pod, kind: j.kind, error: errorMessage(e) });
    }
    rmSync(j.tmp, { recursive: true, force: true });
    rmSync(join(dir, f), { force: true });
  }
  // Temporary directories of work that left no journal.
  for (const t of readdirSync(join(ctx.stateDir, "tmp"))) rmSync(join(ctx.stateDir, "tmp", t), { recursive: true, force: true });
}

/** A committed stop-checkpoint is finished (the pod killed, checkpointed); any other is undone (the pod continues). */
export async function recoverCheckpoint(ctx: CheckpointContext, j: Journal): Promise<void> {
  const { pods, catalogue, log, host } = ctx;
  const isCommitted = j.imageId !== null && catalogue.has(j.imageId);
  const isAlive = j.pid !== null && host.isAlive(j.pid);
  const netns = pods.target0(j.pod).netnsPath;
  if (isCommitted && !j.leaveRunning) {
    if (isAlive) {
      await host.lockNetwork(netns).catch(() => undefined);
      host.killTree(j.pid!);
      await host.waitGone(j.pid!, 10_000);
    }
    pods.endCheckpoint(j.pod, "checkpointed");
    await pods.releaseCheckpointed(j.pod);
    log.info("finished a checkpoint the agent was killed in: the image is complete and the pod checkpointed", { pod: j.pod, image: j.imageId });
    return;
  }
  if (isAlive) {
    host.continueTree(j.pid!);
    await unlockAll(host, netns);
  }
  pods.endCheckpoint(j.pod, "running");
  log.info(
    isCommitted
      ? "a --leave-running checkpoint was interrupted after its image was committed: the pod runs on"
      : "undid a checkpoint the agent was killed in: the pod runs on",
    { pod: j.pod, image: isCommitted ? j.imageId : null },
  );
}

/** A restore whose tasks passed verification is adopted; any other is undone (the pod checkpointed, the image intact). */
export async function recoverRestore(ctx: CheckpointContext, j: Journal): Promise<void> {
  const { pods, log, host } = ctx;
  const pidFile = join(j.tmp, CRIU_WORK, "restore.pid");
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) : NaN;
  const isAlive = Number.isInteger(pid) && pid > 0 && host.isAlive(pid);
  if (isAlive && existsSync(join(j.tmp, UNVERIFIED))) {
    // Restored but stopped, its pages not all checked yet: it never ran, so it goes, and a retry works.
    host.killTree(pid);
    await host.waitGone(pid, 10_000);
  } else if (isAlive) {
    host.continueTree(pid); // in case the agent died between the check and the SIGCONT
    await unlockAll(host, pods.target0(j.pod).netnsPath);
    pods.adoptRestored(j.pod, pid);
    log.info("adopted a pod whose restore finished while the agent was down", { pod: j.pod, pid });
    return;
  }
  await host.removeCriuLock(pods.target0(j.pod).netnsPath).catch(() => []);
  pods.abortRestore(j.pod);
  await pods.releaseCheckpointed(j.pod); // kills anything half-restored in the pod's cgroup
  log.info("undid a restore the agent was killed in: the pod is checkpointed and the image intact", { pod: j.pod, image: j.imageId });
}
