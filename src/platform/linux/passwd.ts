/**
 * The pod's own user database, read by pod-init to start a command as `run --user UID[:GID]`: the uid's
 * primary group and home from /etc/passwd, its supplementary groups from /etc/group (as Docker and Podman do).
 */

export interface Account {
  name: string | null;
  gid: number;
  home: string;
  groups: number[];
}

/** The passwd line of a uid: name, gid and home; null when there is none. Malformed lines are skipped. */
export function passwdEntry(passwd: string, uid: number): { name: string; gid: number; home: string } | null {
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    if (Number(f[2]) === uid) return { name: f[0]!, gid: Number(f[3]), home: f[5] || "/" };
  }
  return null;
}

/** The gids of the groups of /etc/group that list `name` as a member. */
export function groupsOf(group: string, name: string): number[] {
  const out: number[] = [];
  for (const line of group.split("\n")) {
    const f = line.split(":");
    if (f.length < 4 || !/^\d+$/.test(f[2]!)) continue;
    if (f[3]!.split(",").includes(name)) out.push(Number(f[2]));
  }
  return out;
}

/**
 * What a command run as uid (and gid, when given) gets: the group (the given one, else the uid's in passwd, else 0),
 * the supplementary groups (that group and the groups listing the user's name), and the home directory ("/" without one).
 */
export function accountOf(uid: number, gid: number | null, passwd: string, group: string): Account {
  const pw = passwdEntry(passwd, uid);
  const primary = gid ?? pw?.gid ?? 0;
  const extra = pw ? groupsOf(group, pw.name) : [];
  return { name: pw?.name ?? null, gid: primary, home: pw?.home ?? "/", groups: [...new Set([primary, ...extra])] };
}
