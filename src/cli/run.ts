/**
 * `gantry run`: prepare a pod from one or more images (rkt's `---`
 * separator) and run it: in the foreground, where the pod lives as long as
 * the command and the exit code is the apps' (the first non-zero), or
 * detached (`-d`), printing the pod's UUID once every app has started.
 * `run-prepared` shares the start flags' checks and the report (below).
 */
import { GantryError } from '../errors.js';
import { preparePod } from '../pod/prepare.js';
import { startPod, type StartOptions } from '../pod/run.js';
import type { PodResult } from '../stage1/abi.js';
import { boolFlag, type ParsedArgs } from './args.js';
import type { CliEnv, Command } from './command.js';
import { APP_FLAGS, POD_FLAGS, RUN_ONLY_FLAGS, markInteractive, podRequestFromArgv } from './app/flags.js';

/** --detach, --interactive and --rm, refused where they contradict each other. */
export function startOptionsFrom(args: ParsedArgs): Required<StartOptions> {
  const options = { detach: boolFlag(args, 'detach'), interactive: boolFlag(args, 'interactive'), rm: boolFlag(args, 'rm') };
  if (options.detach && options.rm) throw new GantryError('USAGE', '--rm and --detach do not mix', { hint: 'gantry rm UUID removes a detached pod after it exited' });
  if (options.detach && options.interactive) throw new GantryError('USAGE', '--interactive and --detach do not mix');
  return options;
}

/** What a started pod tells the user: its UUID when detached, else the apps' exit code (OOM kills warned). */
export function reportStart(env: CliEnv, uuid: string, result: PodResult, detach: boolean): number {
  if (detach) {
    env.stdout.write(`${uuid}\n`);
    return 0;
  }
  for (const a of result.apps) if (a.oomKilled) env.ctx.warn(`app ${a.app} was killed by the OOM killer (memory limit reached)`);
  return result.exitCode;
}

export const runCommand: Command = {
  name: 'run',
  usage: 'gantry run [pod flags] IMAGE [app flags] [-- ARGS] [--- IMAGE2 [app flags] [-- ARGS] ...]',
  summary: 'Run a pod from one or more images (separated by ---). Foreground: the exit code is the apps\' (the first non-zero); --detach prints the pod UUID.',
  flags: { ...POD_FLAGS, ...RUN_ONLY_FLAGS, ...APP_FLAGS },
  parseOptions: { stopAtPositional: true },
  async run(args, env) {
    const req = podRequestFromArgv(args);
    // Read after podRequestFromArgv: it moves pod flags given right after the first image into `args`.
    const options = startOptionsFrom(args);
    if (options.interactive) markInteractive(req, process.stdin.isTTY === true);
    const pod = await preparePod(env.ctx, req, 'run');
    env.ctx.debug(`pod ${pod.uuid} prepared in ${pod.dir}`);
    const result = await startPod(env.ctx, { uuid: pod.uuid, dir: pod.dir, manifest: pod.manifest, lockFd: pod.lockFd! }, options);
    return reportStart(env, pod.uuid, result, options.detach);
  },
};
