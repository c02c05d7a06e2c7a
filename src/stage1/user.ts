/**
 * Resolves an image's `User` ("name", "uid", "uid:gid", "name:group",
 * "uid:group", "name:gid") to numeric ids against the app's own rootfs
 * (/etc/passwd, /etc/group), the way Docker and runc do.
 *
 * The rootfs comes from an image and may be hostile: /etc/passwd can be a
 * symlink to the host's files, a FIFO, or huge. Paths are resolved inside the
 * rootfs (symlinks re-rooted, `..` clamped), the final file is opened with
 * O_NOFOLLOW|O_NONBLOCK, must be a regular file, and is read up to a size cap.
 */
import fs from 'node:fs';
import { GantryError, errnoCode } from '../errors.js';
import { resolveInRoot } from './ns/rootfs.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /**
   * Supplementary groups: the primary gid first, then /etc/group memberships.
   * The primary gid is included so that a group the image denies access to
   * cannot be bypassed through a stale supplementary list (CVE-2023-25173).
   */
  additionalGids: number[];
  /** Home directory from /etc/passwd, "/" when unknown. */
  home: string;
  /** User name, when /etc/passwd knows the uid. */
  name?: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

/** Files larger than this are not account databases; refusing them bounds memory. */
const MAX_DB_BYTES = 4 * 1024 * 1024;
const MAX_ID = 4294967294; // (uid_t)-1 means "no change" to the kernel

function parseId(text: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/**
 * Reads a file of the rootfs without following any symlink out of it.
 * Returns undefined when the file does not exist (images without /etc/passwd
 * are common: scratch images run as numeric users).
 */
function readRootfsFile(rootfs: string, inside: string, maxBytes = MAX_DB_BYTES): string | undefined {
  const hostPath = resolveInRoot(rootfs, inside);
  let fd: number;
  try {
    fd = fs.openSync(hostPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new GantryError('CONFIG_INVALID', `cannot read ${inside} in the app's rootfs: ${code ?? String(err)}`, {
      hint: 'the image has an unusable account file; fix the image or run with a numeric --user uid:gid',
      cause: err,
    });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      throw new GantryError('CONFIG_INVALID', `${inside} in the app's rootfs is not a regular file`, {
        hint: 'fix the image, or run with a numeric --user uid:gid',
      });
    }
    if (st.size > maxBytes) {
      throw new GantryError('CONFIG_INVALID', `${inside} in the app's rootfs is larger than ${maxBytes} bytes`, {
        hint: 'fix the image, or run with a numeric --user uid:gid',
      });
    }
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7) continue;
    const uid = parseId(f[2]!);
    const gid = parseId(f[3]!);
    if (uid === undefined || gid === undefined || !f[0]) continue;
    out.push({ name: f[0], uid, gid, home: f[5] || '/' });
  }
  return out;
}

function parseGroup(text: string | undefined): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4) continue;
    const gid = parseId(f[2]!);
    if (gid === undefined || !f[0]) continue;
    out.push({ name: f[0], gid, members: f[3]!.split(',').map((s) => s.trim()).filter(Boolean) });
  }
  return out;
}

function userNotFound(what: 'user' | 'group', spec: string): GantryError {
  const subject = what === 'user' ? `user "${spec}"` : `the group of user "${spec}"`;
  return new GantryError('CONFIG_INVALID', `${subject} not found in the image's /etc/${what === 'group' ? 'group' : 'passwd'}`, {
    hint: 'give an existing name, or numeric ids (--user uid:gid), which need no entry in the image',
  });
}

/**
 * Resolves `userSpec` (the image's User or a --user override) and an
 * optional primary-group override against the rootfs.
 */
export function resolveUser(rootfs: string, userSpec: string | undefined, groupOverride?: string): ResolvedUser {
  const spec = (userSpec ?? '').trim();
  const colon = spec.indexOf(':');
  const userPart = colon >= 0 ? spec.slice(0, colon) : spec;
  let groupPart: string | undefined = colon >= 0 ? spec.slice(colon + 1) : undefined;
  if (groupOverride !== undefined && groupOverride !== '') groupPart = groupOverride;
  if (colon >= 0 && (groupPart === undefined || groupPart === '') && groupOverride === undefined) {
    throw new GantryError('CONFIG_INVALID', `user "${spec}" has an empty group`, { hint: 'use "user", "user:group" or "uid:gid"' });
  }

  const passwdText = readRootfsFile(rootfs, '/etc/passwd');
  let groups: GroupEntry[] | undefined;
  const loadGroups = (): GroupEntry[] => (groups ??= parseGroup(readRootfsFile(rootfs, '/etc/group')));
  const passwd = parsePasswd(passwdText);

  let entry: PasswdEntry | undefined;
  let uid: number;
  if (userPart === '') {
    uid = 0;
    entry = passwd.find((p) => p.uid === 0);
  } else {
    const numeric = parseId(userPart);
    if (numeric !== undefined) {
      uid = numeric;
      entry = passwd.find((p) => p.uid === numeric);
    } else {
      if (/^[0-9-]/.test(userPart) || /[\s:/]/.test(userPart)) {
        throw new GantryError('CONFIG_INVALID', `user "${spec}" is neither a valid uid nor a user name`, {
          hint: `uids are decimal numbers 0..${MAX_ID}`,
        });
      }
      entry = passwd.find((p) => p.name === userPart);
      if (!entry) throw userNotFound('user', spec);
      uid = entry.uid;
    }
  }

  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined && groupPart !== '') {
    const numeric = parseId(groupPart);
    if (numeric !== undefined) gid = numeric;
    else {
      const g = loadGroups().find((x) => x.name === groupPart);
      if (!g) throw userNotFound('group', spec + (groupOverride ? ` (group ${groupOverride})` : ''));
      gid = g.gid;
    }
  }

  const additional: number[] = [gid];
  if (entry) {
    for (const g of loadGroups()) {
      if (g.members.includes(entry.name) && g.gid !== gid && !additional.includes(g.gid)) additional.push(g.gid);
    }
  }
  return { uid, gid, additionalGids: additional, home: entry?.home ?? '/', ...(entry ? { name: entry.name } : {}) };
}
