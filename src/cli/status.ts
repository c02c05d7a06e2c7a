/** `gantry status UUID [--wait[=DURATION]]`: the pod's state, and each app's state, exit code and OOM kill. */
import { GantryError } from '../errors.js';
import { findPod, podStatus, waitForExit } from '../pod/pods.js';
import { parseDuration } from './args.js';
import { writeJson, type Command } from './command.js';

export const statusCommand: Command = {
  name: 'status',
  usage: 'gantry status [--wait[=DURATION]] [--format json] UUID',
  summary: 'Show a pod\'s state and each app\'s state, pid, exit code and OOM kill. --wait waits (at most DURATION) until the pod exited; the exit code is then POD_STATE if it still runs.',
  flags: {
  },
  // --wait takes an optional value, which the flag parser cannot express: it is read from the words here.
  parseOptions: { allowUnknown: true },
  async run(args, env) {
    let waitMs: number | undefined;
    const words: string[] = [];
    for (const w of args.positionals) {
      if (w === '--wait') waitMs = Number.POSITIVE_INFINITY;
      else if (w.startsWith('--wait=')) waitMs = parseDuration(w.slice('--wait='.length), 'wait');
      else if (w.startsWith('-')) throw new GantryError('USAGE', `unknown flag ${w}`, { hint: 'see gantry status --help' });
      else words.push(w);
    }
    if (words.length !== 1) throw new GantryError('USAGE', 'status takes one pod UUID');
    let pod = findPod(env.ctx, words[0]!);
    if (waitMs !== undefined && (pod.state === 'running' || pod.state === 'preparing' || pod.state === 'prepared')) {
      const exited = await waitForExit(pod, waitMs);
      pod = findPod(env.ctx, pod.uuid);
      if (!exited) {
        throw new GantryError('POD_STATE', `pod ${pod.uuid} is still ${pod.state} after ${waitMs} ms`, { hint: 'wait longer, or gantry stop it' });
      }
    }
    const s = await podStatus(env.ctx, pod);
    if (env.format === 'json') {
      writeJson(env, s);
      return 0;
    }
    const lines = [`uuid=${s.uuid}`, `state=${s.state}`, `created=${s.createdAt}`];
    if (s.exitedAt) lines.push(`exited=${s.exitedAt}`);
    for (const a of s.apps) {
      const parts = [`app=${a.name}`, `state=${a.state}`];
      if (a.pid !== undefined) parts.push(`pid=${a.pid}`);
      if (a.exitCode !== undefined) parts.push(`exit-code=${a.exitCode}`);
      if (a.signal) parts.push(`signal=${a.signal}`);
      if (a.oomKilled) parts.push('oom-killed=true');
      if (a.startedAt) parts.push(`started=${a.startedAt}`);
      if (a.finishedAt) parts.push(`finished=${a.finishedAt}`);
      lines.push(parts.join(' '));
    }
    for (const n of s.network ?? []) lines.push(`network=${n.name} ips=${n.ips.join(',')}${n.interface ? ` interface=${n.interface}` : ''}`);
    env.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};
