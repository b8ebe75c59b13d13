/**
 * `--user`/`--group`: drop root once every privileged port is bound. Names are looked up in
 * /etc/passwd and /etc/group (Deno has no getpwnam); the switch uses node:process (needs --allow-sys).
 * @module
 */
import process from "node:process";
import { dirname } from "node:path";
import { ConfigError } from "./config.ts";

/** A numeric user and group. */
export interface Ids {
  readonly uid: number;
  readonly gid: number;
}

/** Resolves `user` (name or number) and optional `group` from passwd/group file texts. */
export function resolveIds(opts: { user: string; group?: string; passwd: string; groups: string }): Ids {
  const userLine = opts.passwd.split("\n").map((l) => l.split(":")).find((f) =>
    f.length >= 4 && (f[0] === opts.user || f[2] === opts.user)
  );
  if (userLine === undefined) {
    if (!/^\d+$/.test(opts.user)) throw new ConfigError(`--user ${opts.user}: no such user in /etc/passwd`);
  }
  const uid = userLine ? Number(userLine[2]) : Number(opts.user);
  let gid = userLine ? Number(userLine[3]) : uid;
  if (opts.group) {
    const groupLine = opts.groups.split("\n").map((l) => l.split(":")).find((f) =>
      f.length >= 3 && (f[0] === opts.group || f[2] === opts.group)
    );
    if (groupLine === undefined && !/^\d+$/.test(opts.group)) {
      throw new ConfigError(`--group ${opts.group}: no such group in /etc/group`);
    }
    gid = groupLine ? Number(groupLine[2]) : Number(opts.group);
  }
  return { uid, gid };
}

/** Reads the system's user and group tables and resolves the names. */
export function lookupIds(user: string, group?: string): Ids {
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return "";
    }
  };
  return resolveIds({ user, group, passwd: read("/etc/passwd"), groups: read("/etc/group") });
}

/**
 * Hands the state files to the new user, then switches group and user for good. Returns notes for the
 * log: a state directory the user cannot write to is named (its files could not be replaced atomically).
 */
export function dropPrivileges(ids: Ids, opts: { stateFiles: readonly string[] }): string[] {
  const notes: string[] = [];
  for (const file of opts.stateFiles) {
    for (const path of [file, `${file}.bak`, `${file}.journal`]) {
      try {
        Deno.chownSync(path, ids.uid, ids.gid);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          notes.push(`cannot hand ${path} to uid ${ids.uid}: ${err}`);
        }
      }
    }
    const dir = dirname(file);
    try {
      const info = Deno.statSync(dir);
      const mode = info.mode ?? 0;
      const writable = info.uid === ids.uid ? (mode & 0o200) !== 0 : (mode & 0o002) !== 0 ||
        (info.gid === ids.gid && (mode & 0o020) !== 0);
      if (!writable) {
        notes.push(
          `${dir} is not writable by uid ${ids.uid}: ${file} cannot be saved; use a directory it owns`,
        );
      }
    } catch {
      // the directory is created later or not at all: nothing to hand over
    }
  }
  if (Deno.uid() !== 0) throw new Error("--user needs pypxe to start as root");
  if (process.setgid === undefined || process.setuid === undefined) {
    throw new Error("this platform cannot switch users (use setcap or systemd instead)");
  }
  process.setgroups?.([ids.gid]);
  process.setgid(ids.gid);
  process.setuid(ids.uid);
  if (Deno.uid() !== ids.uid || Deno.gid() !== ids.gid) throw new Error(`could not switch to uid ${ids.uid}`);
  return notes;
}
