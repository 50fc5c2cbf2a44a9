/**
 * Who a fake process is: its image's User ("name", "uid", "name:group", "uid:gid", or "root"),
 * looked up in the sandbox's /etc/passwd and /etc/group as the real runtime does, for the mini
 * shell's `whoami` and `id`.
 */
import type { FakeTree } from "./fake-tree.js";

export interface ProcessIdentity {
  readonly uid: number;
  readonly gid: number;
  /** Undefined when /etc/passwd has no entry for the uid. */
  readonly userName: string | undefined;
  readonly groupName: string | undefined;
}

/** The entries of /etc/passwd or /etc/group, split on ":" (none when the file is missing). */
function table(tree: FakeTree, path: string): string[][] {
  try {
    return new TextDecoder()
      .decode(tree.readAll(path))
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("#"))
      .map((line) => line.split(":"));
  } catch {
    return [];
  }
}

const numeric = (text: string) => /^\d+$/.test(text);

/** The process's ids and names, or a sentence saying why `user` names no one. */
export function identityOf(user: string, tree: FakeTree): ProcessIdentity | string {
  const [name = "", group] = user.split(":");
  const passwd = table(tree, "/etc/passwd");
  const groups = table(tree, "/etc/group");
  const entry = numeric(name) ? passwd.find((e) => e[2] === name) : passwd.find((e) => e[0] === name);
  let uid: number;
  let gid: number;
  if (numeric(name)) uid = Number(name);
  else if (entry) uid = Number(entry[2]);
  else if (name === "root" || name === "") uid = 0;
  else return `no such user: ${name} (not in /etc/passwd)`;
  if (group === undefined) gid = entry ? Number(entry[3]) : numeric(name) ? uid : 0;
  else if (numeric(group)) gid = Number(group);
  else {
    const found = groups.find((e) => e[0] === group);
    if (!found) return `no such group: ${group} (not in /etc/group)`;
    gid = Number(found[2]);
  }
  const userName = entry?.[0] ?? (uid === 0 ? "root" : undefined);
  const groupName = groups.find((e) => e[2] === String(gid))?.[0] ?? (gid === 0 ? "root" : undefined);
  return { uid, gid, userName, groupName };
}
