/**
 * `gantry gc`: clean up exited pods at once (mounts, cgroups, leftover
 * processes), delete their records after the grace period, and remove
 * failed preparations and prepared pods nobody ran.
 */
import { EXIT_CODES } from '../errors.js';
import { DEFAULT_EXPIRE_PREPARED_MS, DEFAULT_GC_GRACE_MS, gcPods } from '../pod/pods.js';
import { parseDuration, stringFlag } from './args.js';
import { writeJson, type Command } from './command.js';

export const gcCommand: Command = {
  name: 'gc',
  usage: 'gantry gc [--grace-period=30m] [--expire-prepared=24h]',
  summary: 'Garbage-collect pods: exited pods are cleaned now and removed after the grace period; aborted and expired prepared pods are removed.',
  flags: {
    'grace-period': { type: 'string', value: 'DURATION', description: `keep exited pods (logs, status) this long (default ${DEFAULT_GC_GRACE_MS / 60000}m, as rkt); 0 removes them now` },
    'expire-prepared': { type: 'string', value: 'DURATION', description: `remove prepared pods not run within this long (default ${DEFAULT_EXPIRE_PREPARED_MS / 3600000}h)` },
  },
  async run(args, env) {
    const g = stringFlag(args, 'grace-period');
    const e = stringFlag(args, 'expire-prepared');
    const report = await gcPods(env.ctx, {
      gracePeriodMs: g === undefined ? undefined : parseDuration(g, 'grace-period'),
      expirePreparedMs: e === undefined ? undefined : parseDuration(e, 'expire-prepared'),
    });
    if (env.format === 'json') writeJson(env, report);
    else {
      const words = { 'moved-to-exited-garbage': 'exited, moved to garbage', cleaned: 'cleaned up', removed: 'removed' };
      for (const a of report.actions) env.stdout.write(`pod ${a.uuid}: ${words[a.action]}\n`);
    }
    for (const m of report.errors) env.stderr.write(`gantry: error: ${m}\n`);
    return report.errors.length > 0 ? EXIT_CODES.RUNTIME_ERROR : 0;
  },
};
