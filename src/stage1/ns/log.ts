/**
 * Foreground output of apps: every chunk an app writes goes to the terminal
 * (or the fd stage0 gave) and, line by line, to the app's CRI log file
 * `<podDir>/logs/<app>.log` — the same format conmon writes for detached
 * apps (`<RFC3339Nano> <stdout|stderr> <F|P> <line>`), so `gantry logs` and
 * the CRI read one format whatever ran the app.
 *
 * Lifecycle: one AppOutput per app, fed by the runtime's stdout/stderr
 * pipes, closed when the app exited (flushing an unterminated last line as
 * a full line, as conmon does at exit).
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { StdioTarget } from '../abi.js';

/** Lines longer than this are split into P (partial) records, like conmon's 8 KiB buffer. */
const MAX_LINE = 16 * 1024;

/** Current time as RFC 3339 with nanosecond digits (the clock gives microseconds). */
export function rfc3339Nano(): string {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const iso = new Date(whole).toISOString(); // 2024-01-02T03:04:05.678Z
  const micros = Math.floor((ms - whole) * 1000).toString().padStart(3, '0');
  return `${iso.slice(0, 23)}${micros}000Z`;
}

/** One CRI log line (without the trailing newline of the record). */
export function criRecord(stream: 'stdout' | 'stderr', partial: boolean, line: string): string {
  return `${rfc3339Nano()} ${stream} ${partial ? 'P' : 'F'} ${line}\n`;
}

function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  for (let i = 0; off < data.length && i < 1000; i++) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      return; // a closed terminal must not kill the pod; the log still has it
    }
  }
}

class StreamSplitter {
  private pending = Buffer.alloc(0);
  constructor(private readonly logFd: number, private readonly stream: 'stdout' | 'stderr') {}

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let out = '';
    for (;;) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) break;
      out += criRecord(this.stream, false, buf.subarray(0, nl).toString('utf8'));
      buf = buf.subarray(nl + 1);
    }
    while (buf.length > MAX_LINE) {
      out += criRecord(this.stream, true, buf.subarray(0, MAX_LINE).toString('utf8'));
      buf = buf.subarray(MAX_LINE);
    }
    this.pending = Buffer.from(buf);
    if (out) writeAll(this.logFd, Buffer.from(out));
  }

  flush(): void {
    if (this.pending.length) writeAll(this.logFd, Buffer.from(criRecord(this.stream, false, this.pending.toString('utf8'))));
    this.pending = Buffer.alloc(0);
  }
}

/** Copies a line-prefixed view of a stream to a terminal fd. */
class Prefixer {
  private atLineStart = true;
  constructor(private readonly fd: number, private readonly prefix: string) {}
  push(chunk: Buffer): void {
    if (!this.prefix) {
      writeAll(this.fd, chunk);
      return;
    }
    const text = chunk.toString('utf8');
    let out = '';
    for (const piece of text.split(/(?<=\n)/)) {
      if (this.atLineStart) out += this.prefix;
      out += piece;
      this.atLineStart = piece.endsWith('\n');
    }
    writeAll(this.fd, Buffer.from(out));
  }
}

function targetFd(target: StdioTarget, fallback: number): number | undefined {
  if (target === 'ignore') return undefined;
  if (target === 'inherit') return fallback;
  return target;
}

export class AppOutput {
  private readonly logFd: number;
  private readonly out: StreamSplitter;
  private readonly err: StreamSplitter;
  private readonly termOut?: Prefixer;
  private readonly termErr?: Prefixer;

  constructor(logPath: string, stdout: StdioTarget, stderr: StdioTarget, prefix: string) {
    this.logFd = fs.openSync(logPath, 'a', 0o640);
    this.out = new StreamSplitter(this.logFd, 'stdout');
    this.err = new StreamSplitter(this.logFd, 'stderr');
    const o = targetFd(stdout, 1);
    const e = targetFd(stderr, 2);
    if (o !== undefined) this.termOut = new Prefixer(o, prefix);
    if (e !== undefined) this.termErr = new Prefixer(e, prefix);
  }

  stdout(chunk: Buffer): void {
    this.termOut?.push(chunk);
    this.out.push(chunk);
  }

  stderr(chunk: Buffer): void {
    this.termErr?.push(chunk);
    this.err.push(chunk);
  }

  close(): void {
    this.out.flush();
    this.err.flush();
    fs.closeSync(this.logFd);
  }
}
