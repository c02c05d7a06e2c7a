/**
 * Detached apps under conmon (Debian's container monitor): conmon runs
 * `<runtime> create`, reports the app's PID on a sync pipe, stays as the
 * app's parent, writes its stdout/stderr to the CRI log
 * (`--log-path k8s-file:...`) and its exit code to `<exit-dir>/<id>`.
 * gantry then runs `<runtime> start`. conmon daemonizes: it outlives stage0.
 *
 * The pod lock: conmon keeps file descriptors it inherits open for its whole
 * life (checked on conmon 2.1.6: `ls -l /proc/<conmon>/fd` lists them), so
 * each app's conmon inherits stage0's open file description of
 * `<podDir>/lock` and the flock stays held until the last monitor of the pod
 * exits — no extra keeper process. An app added later gets the same open
 * file description from a live holder with pidfd_getfd(2) (Linux 5.6+).
 *
 * Processes are recorded as (pid, start time) pairs so that a recycled PID
 * is never mistaken for a monitor or signalled.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { GantryError } from '../../errors.js';
import { pidfdGetfd, pidfdOpen } from '../../sys/libc.js';

/** The fd number the lock has inside each conmon. */
export const MONITOR_LOCK_FD = 4;
const SYNC_TIMEOUT_MS = 30_000;

export interface ProcessId {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot). */
  start: string;
}

/** The start time of a live process, or undefined when it is gone. */
function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = rest[0];
    if (state === 'Z' || state === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function identify(pid: number): ProcessId | undefined {
  const start = processStart(pid);
  return start === undefined ? undefined : { pid, start };
}

export function isAlive(p: ProcessId | undefined): boolean {
  return p !== undefined && processStart(p.pid) === p.start;
}

/** Sends a signal to a recorded process only if it is still that process. */
export function signalProcess(p: ProcessId | undefined, signal: NodeJS.Signals | number): boolean {
  if (!isAlive(p)) return false;
  try {
    process.kill(p!.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Duplicates fd `fd` of process `p` into this process (same open file
 * description, so a flock held through it is shared). Returns undefined
 * when the process is gone or the call fails.
 */
export function stealFd(p: ProcessId, fd: number): number | undefined {
  if (!isAlive(p)) return undefined;
  const pidfd = pidfdOpen(p.pid);
  if (pidfd === undefined) return undefined;
  try {
    if (!isAlive(p)) return undefined; // the pidfd might name a recycled PID
    return pidfdGetfd(pidfd, fd);
  } finally {
    fs.closeSync(pidfd);
  }
}

export interface ConmonStart {
  conmonPath: string;
  runtimePath: string;
  runtimeArgs: string[];
  id: string;
  bundle: string;
  pidFile: string;
  conmonPidFile: string;
  logPath: string;
  exitDir: string;
  socketDir: string;
  persistDir: string;
  /** fd holding the pod lock, inherited as MONITOR_LOCK_FD. */
  lockFd?: number;
  tty?: boolean;
}

/**
 * Starts conmon for one app and waits until the runtime created the
 * container. Resolves to the app's PID; the container is in state
 * "created" (the caller runs `<runtime> start`).
 */
export function startConmon(opts: ConmonStart): Promise<{ pid: number; conmon: ProcessId | undefined }> {
  const args = [
    '--api-version', '1', '-c', opts.id, '-u', opts.id, '-n', opts.id,
    '-r', opts.runtimePath, '-b', opts.bundle,
    '-p', opts.pidFile, '-P', opts.conmonPidFile,
    '-l', `k8s-file:${opts.logPath}`,
    '--exit-dir', opts.exitDir, '--socket-dir-path', opts.socketDir,
    '-0', opts.persistDir,
    '--log-level', 'error',
    ...opts.runtimeArgs.flatMap((a) => ['--runtime-arg', a]),
  ];
  if (opts.tty) args.push('-t');
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'ignore', 'pipe'];
  if (opts.lockFd !== undefined) stdio[MONITOR_LOCK_FD] = opts.lockFd;
  return new Promise((resolve, reject) => {
    const child = spawn(opts.conmonPath, args, {
      stdio,
      // conmon writes an "oom" marker into its working directory (as CRI-O
      // expects); keep it in the app's bundle, not wherever gantry ran.
      cwd: opts.bundle,
      env: { ...process.env, _OCI_SYNCPIPE: '3' },
    });
    const sync = child.stdio[3] as NodeJS.ReadableStream | null;
    let text = '';
    let done = false;
    const finish = (err: Error | undefined, pid?: number): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      (sync as unknown as { destroy?: () => void } | null)?.destroy?.();
      if (err) {
        reject(err);
        return;
      }
      let conmon: ProcessId | undefined;
      try {
        conmon = identify(Number(fs.readFileSync(opts.conmonPidFile, 'utf8').trim()));
      } catch {
        conmon = undefined;
      }
      resolve({ pid: pid!, conmon });
    };
    const timer = setTimeout(() => finish(new GantryError('RUNTIME_ERROR', `conmon did not report container ${opts.id} within ${SYNC_TIMEOUT_MS / 1000}s`, {
      hint: 'run with --debug; see the runtime log in the app dir',
    })), SYNC_TIMEOUT_MS);
    child.on('error', (err) => finish(new GantryError('RUNTIME_ERROR', `cannot start conmon (${opts.conmonPath}): ${err.message}`, {
      hint: 'install conmon (apt install conmon)', cause: err,
    })));
    sync?.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const nl = text.indexOf('\n');
      const candidate = nl >= 0 ? text.slice(0, nl) : text;
      let msg: { data?: number; pid?: number; message?: string };
      try {
        msg = JSON.parse(candidate) as typeof msg;
      } catch {
        return; // wait for the rest of the line
      }
      const pid = msg.data ?? msg.pid ?? -1;
      if (pid > 0) finish(undefined, pid);
      else finish(new GantryError('RUNTIME_ERROR', `cannot create container ${opts.id}: ${msg.message ?? 'conmon reported a failure'}`, {
        hint: 'check the image\'s command (--exec) and user; run with --debug',
      }));
    });
    sync?.on('end', () => finish(new GantryError('RUNTIME_ERROR', `conmon exited without creating container ${opts.id}${text ? `: ${text.trim()}` : ''}`, {
      hint: 'run with --debug; see the runtime log in the app dir',
    })));
  });
}

/** The exit code conmon recorded for an app, or undefined while none is. */
export function readExitFile(exitDir: string, id: string): { code: number; at: string } | undefined {
  const file = `${exitDir}/${id}`;
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (!/^-?\d+$/.test(text)) return undefined;
    return { code: Number(text), at: fs.statSync(file).mtime.toISOString() };
  } catch {
    return undefined;
  }
}
