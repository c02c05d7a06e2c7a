/**
 * The CNI execution protocol (SPEC 1.0.0 section 2): a plugin is an
 * executable found by its `type` in CNI_PATH, called with the CNI_*
 * environment and one plugin's configuration on stdin; it answers with a
 * result (ADD) or nothing (DEL, CHECK) on stdout and exit 0, or with an
 * error object `{code, msg, details}` and a non-zero exit.
 *
 * Each call is bounded by a timeout; a plugin that overstays it is killed
 * with its whole process group (it runs as a group leader for that reason,
 * so a shell-script plugin's children die with it).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { GantryError } from '../errors.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

/** Where plugins are looked for: CNI_PATH, then Debian's and the upstream locations. */
export function pluginDirs(): string[] {
  const fromEnv = (process.env.CNI_PATH ?? '').split(':').filter(Boolean);
  return [...new Set([...fromEnv, '/usr/lib/cni', '/opt/cni/bin'])];
}

/** Resolves a plugin type to its executable; NETWORK_ERROR names the dirs searched. */
export function findPlugin(network: string, type: string, dirs: readonly string[]): string {
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here; keep looking
    }
  }
  throw new GantryError('NETWORK_ERROR', `network "${network}": CNI plugin "${type}" is not installed (looked in ${dirs.join(', ')})`, {
    hint: `install it (Debian: apt install containernetworking-plugins) or put its directory in CNI_PATH`,
  });
}

/** Per-call timeout: GANTRY_CNI_TIMEOUT_MS, default 30 s. */
export function pluginTimeoutMs(): number {
  const raw = process.env.GANTRY_CNI_TIMEOUT_MS;
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : 30_000;
}

export interface PluginCall {
  command: CniCommand;
  network: string;
  pluginPath: string;
  containerId: string;
  /** Empty on DEL when the namespace is gone (allowed by the spec). */
  netns: string;
  ifname: string;
  /** CNI_ARGS, already joined as K=V;K=V. */
  cniArgs: string;
  dirs: readonly string[];
  /** The plugin's configuration as sent on stdin. */
  config: Record<string, unknown>;
  timeoutMs: number;
}

const MAX_OUTPUT = 4 * 1024 * 1024;

/** A CNI error object, when the plugin printed one. */
interface CniErrorObject { code?: number; msg?: string; details?: string }

function describePluginError(stdout: string, stderr: string): string {
  try {
    const err = JSON.parse(stdout) as CniErrorObject;
    if (typeof err === 'object' && err !== null && (err.msg !== undefined || err.code !== undefined)) {
      const parts = [err.msg ?? 'error'];
      if (err.details) parts.push(`(${err.details})`);
      if (err.code !== undefined) parts.push(`[CNI error code ${err.code}]`);
      return parts.join(' ');
    }
  } catch {
    // not JSON: fall back to the raw output
  }
  const text = (stdout.trim() || stderr.trim()).slice(0, 2000);
  return text === '' ? 'no error output' : text;
}

/**
 * Runs one plugin call. Resolves with the parsed stdout (ADD: the result;
 * DEL/CHECK: usually undefined), or throws NETWORK_ERROR naming the network,
 * plugin and command.
 */
export function execPlugin(ctx: Context, call: PluginCall): Promise<unknown> {
  const type = path.basename(call.pluginPath);
  const what = `network "${call.network}": CNI plugin "${type}" ${call.command}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifname,
    CNI_ARGS: call.cniArgs,
    CNI_PATH: call.dirs.join(':'),
  };
  const input = JSON.stringify(call.config);
  ctx.debug(`net: ${call.command} ${type} netns=${call.netns || '(none)'} if=${call.ifname} args=${call.cniArgs}`);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(call.pluginPath, [], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let overflow = false;
    const onData = (which: 'out' | 'err') => (d: Buffer) => {
      if (which === 'out') stdout += d.toString();
      else stderr += d.toString();
      if (stdout.length + stderr.length > MAX_OUTPUT && !overflow) {
        overflow = true;
        killGroup(child.pid);
      }
    };
    child.stdout.on('data', onData('out'));
    child.stderr.on('data', onData('err'));
    // A plugin may exit without reading stdin; EPIPE then is not our error.
    child.stdin.on('error', () => {});
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, call.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new GantryError('NETWORK_ERROR', `${what}: cannot run ${call.pluginPath}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ctx.debug(`net: ${call.command} ${type} -> ${code ?? signal} in ${Date.now() - started} ms`);
      if (timedOut) {
        reject(new GantryError('NETWORK_ERROR', `${what} did not finish within ${call.timeoutMs} ms and was killed`, {
          hint: 'check the plugin (a hung DHCP server, a locked IPAM store?); GANTRY_CNI_TIMEOUT_MS sets the limit',
        }));
        return;
      }
      if (overflow) {
        reject(new GantryError('NETWORK_ERROR', `${what} wrote more than ${MAX_OUTPUT} bytes of output and was killed`));
        return;
      }
      if (code !== 0) {
        reject(new GantryError('NETWORK_ERROR', `${what} failed: ${describePluginError(stdout, stderr)}`, {
          hint: `check the network's config${call.config.name ? ` ("${String(call.config.name)}")` : ''} and the plugin's requirements; --debug shows each plugin call`,
        }));
        return;
      }
      const text = stdout.trim();
      if (text === '') {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new GantryError('NETWORK_ERROR', `${what} printed a result that is not JSON: ${text.slice(0, 200)}`));
      }
    });
    child.stdin.end(input);
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
