/**
 * `gantry logs [-f] UUID [--app NAME]`: the apps' output from the CRI log
 * files stage1 keeps in the pod dir; stdout records go to stdout, stderr
 * records to stderr. With several apps each line is prefixed with the app
 * name. -f follows until the pod exits (or --max-follow passes).
 */
import { GantryError } from '../errors.js';
import { isPodLocked } from '../pod/lock.js';
import { followLogs, readAllLogs, type LogRecord } from '../pod/logs.js';
import { findPod } from '../pod/pods.js';
import { boolFlag, parseDuration, stringFlag } from './args.js';
import type { Command } from './command.js';

export const logsCommand: Command = {
  name: 'logs',
  usage: 'gantry logs [-f] [--app NAME] UUID',
  summary: 'Print the output of a pod\'s apps (kept in CRI log format in the pod dir); -f follows it until the pod exits.',
  flags: {
    follow: { type: 'boolean', short: 'f', description: 'keep printing new output until the pod exits' },
    app: { type: 'string', value: 'NAME', description: 'only this app' },
    'max-follow': { type: 'string', value: 'DURATION', description: 'stop following after this long (default: until the pod exits)' },
  },
  async run(args, env) {
    if (args.positionals.length !== 1) throw new GantryError('USAGE', 'logs takes one pod UUID');
    const pod = findPod(env.ctx, args.positionals[0]!);
    if (!pod.manifest) throw new GantryError('POD_STATE', `pod ${pod.uuid} is ${pod.state}: it has no apps yet`);
    const appName = stringFlag(args, 'app');
    const names = pod.manifest.apps.map((a) => a.name);
    if (appName !== undefined && !names.includes(appName)) {
      throw new GantryError('USAGE', `pod ${pod.uuid} has no app "${appName}"`, { hint: `apps: ${names.join(', ')}` });
    }
    const apps = appName ? [appName] : names;
    const prefix = apps.length > 1;
    // `gantry logs UUID | head`: a closed pipe ends the command quietly.
    for (const stream of [env.stdout, env.stderr]) {
      stream.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
    }
    const pending = new Map<string, string>();
    const emit = (r: LogRecord): void => {
      const key = `${r.app}/${r.stream}`;
      const text = (pending.get(key) ?? '') + r.text;
      if (r.partial) {
        pending.set(key, text);
        return;
      }
      pending.delete(key);
      (r.stream === 'stderr' ? env.stderr : env.stdout).write(`${prefix ? `[${r.app}] ` : ''}${text}\n`);
    };
    if (boolFlag(args, 'follow')) {
      const max = stringFlag(args, 'max-follow');
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      try {
        await followLogs(pod.dir, apps, () => isPodLocked(pod.dir), emit, { maxMs: max ? parseDuration(max, 'max-follow') : undefined, signal: abort.signal });
      } finally {
        process.removeListener('SIGINT', onSignal);
      }
    } else {
      readAllLogs(pod.dir, apps).forEach(emit);
    }
    for (const [key, text] of pending) {
      const [app, stream] = key.split('/') as [string, string];
      (stream === 'stderr' ? env.stderr : env.stdout).write(`${prefix ? `[${app}] ` : ''}${text}\n`);
    }
    return 0;
  },
};
