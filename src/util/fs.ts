/**
 * Writing a small file so that readers see the old content or the new one,
 * never a torn mix: a temp file beside it, optionally fsynced, renamed over
 * it. Every state file gantry rewrites in place goes through here.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { translateFsError } from '../errors.js';

export interface AtomicWriteOptions {
  /** fsync before the rename so the new content survives a power loss (default true). */
  durable?: boolean;
  mode?: number;
}

function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export function writeFileAtomicSync(file: string, data: string | Buffer, options: AtomicWriteOptions = {}): void {
  const tmp = tempName(file);
  try {
    const fd = fs.openSync(tmp, 'wx', options.mode ?? 0o600);
    try {
      fs.writeFileSync(fd, data);
      if (options.durable ?? true) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw translateFsError(err, file);
  }
}

export async function writeFileAtomic(file: string, data: string | Buffer, options: AtomicWriteOptions = {}): Promise<void> {
  const tmp = tempName(file);
  try {
    const handle = await fsp.open(tmp, 'wx', options.mode ?? 0o600);
    try {
      await handle.writeFile(data);
      if (options.durable ?? true) await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw translateFsError(err, file);
  }
}
