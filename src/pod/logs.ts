/**
 * Reading the apps' logs stage1 writes in the CRI log format, one file per
 * app at `<podDir>/logs/<app>.log`, one record per line:
 *
 *   <RFC 3339 time> <stdout|stderr> <F|P> <text>
 *
 * `P` marks a partial line (the app wrote no newline yet, or a line longer
 * than the writer's buffer); the next records continue it. Followers keep
 * the files open by fd, so a pod dir renamed to another state while they
 * read does not disturb them.
 */
import fs from 'node:fs';
import { appLogPath } from '../stage1/abi.js';

export interface LogRecord {
  app: string;
  time: string;
  stream: 'stdout' | 'stderr';
  /** True when the text does not end a line. */
  partial: boolean;
  text: string;
}

const LINE_RE = /^(\S+) (stdout|stderr) ([FP])(?: (.*))?$/s;


function parseCriLine(app: string, line: string): LogRecord | undefined {
  const m = LINE_RE.exec(line);
  if (!m) return undefined;
  return { app, time: m[1]!, stream: m[2] as 'stdout' | 'stderr', partial: m[3] === 'P', text: m[4] ?? '' };
}

/** An incremental reader of one app's log file. */
export class LogTail {
  private fd: number | undefined;
  private offset = 0;
  private carry = '';

  constructor(readonly app: string, private readonly file: string) {}

  /** Reads what was appended since the last call; complete lines only. */
  read(maxBytes = 1 << 20): LogRecord[] {
    if (this.fd === undefined) {
      try {
        this.fd = fs.openSync(this.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch {
        return [];
      }
    }
    const out: LogRecord[] = [];
    const buf = Buffer.alloc(64 * 1024);
    let total = 0;
    for (;;) {
      const n = fs.readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      total += n;
      this.carry += buf.subarray(0, n).toString('utf8');
      if (total >= maxBytes) break;
    }
    const lines = this.carry.split('\n');
    this.carry = lines.pop() ?? '';
    for (const line of lines) {
      const rec = parseCriLine(this.app, line);
      if (rec) out.push(rec);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Every record of the given apps so far, merged in time order (stable per app). */
export function readAllLogs(podDir: string, apps: string[]): LogRecord[] {
  const all: LogRecord[] = [];
  for (const app of apps) {
    const tail = new LogTail(app, appLogPath(podDir, app));
    try {
      for (let chunk = tail.read(); chunk.length > 0; chunk = tail.read()) all.push(...chunk);
    } finally {
      tail.close();
    }
  }
  return all.sort((a, b) => a.time.localeCompare(b.time));
}

export interface FollowOptions {
  pollMs?: number;
  /** Stop after this long even if the pod still runs. */
  maxMs?: number;
  signal?: AbortSignal;
}

/**
 * Emits every record, then new ones as they arrive, until `alive()` turns
 * false (one last read then), the time bound passes, or `signal` aborts.
 */
export async function followLogs(podDir: string, apps: string[], alive: () => boolean, emit: (r: LogRecord) => void, options: FollowOptions = {}): Promise<void> {
  const tails = apps.map((a) => new LogTail(a, appLogPath(podDir, a)));
  const deadline = Date.now() + (options.maxMs ?? Number.POSITIVE_INFINITY);
  const pollMs = options.pollMs ?? 200;
  const drain = (): void => {
    const batch: LogRecord[] = [];
    for (const t of tails) for (let c = t.read(); c.length > 0; c = t.read()) batch.push(...c);
    batch.sort((a, b) => a.time.localeCompare(b.time)).forEach(emit);
  };
  try {
    for (;;) {
      const running = alive();
      drain();
      if (!running || Date.now() >= deadline || options.signal?.aborted) return;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    tails.forEach((t) => t.close());
  }
}
