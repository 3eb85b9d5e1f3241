/** Helpers shared by this folder's tests. */
import fs from "node:fs";
import path from "node:path";

/** A description of a tree to compare two trees: type, mode, owner, mtime, size, content hash, link target. */
export function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (abs: string, rel: string) => {
    const st = fs.lstatSync(abs);
    let what: string;
    if (st.isSymbolicLink()) what = `link ${fs.readlinkSync(abs)} ${st.uid}:${st.gid}`;
    else if (st.isDirectory()) what = `dir`;
    else what = `file ${st.size} ${Bun.hash(fs.readFileSync(abs)).toString(16)} nlink=${st.nlink}`;
    const mtime = st.isSymbolicLink() ? "" : ` mtime=${Math.round(st.mtimeMs)}`;
    out[rel] = `${what} mode=${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${mtime}`;
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n), rel === "." ? n : `${rel}/${n}`);
  };
  walk(root, ".");
  return out;
}
