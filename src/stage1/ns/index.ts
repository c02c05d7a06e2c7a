/**
 * stage1 `ns`: the default stage1. Apps run in their own namespaces and
 * overlay rootfs through a real OCI runtime (crun by default, runc on
 * request); see run.ts for the run lifecycle and docs/stage1-abi.md for the
 * contract. Implemented so far: run (foreground) and gc; the verbs of
 * running pods (enter, stop, app add/start/stop/rm) arrive with the pod
 * lifecycle and detached mode.
 */
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import type { Stage1 } from '../abi.js';
import { gcPod, runPod } from './run.js';

function notYet(verb: string): never {
  throw new GantryError('RUNTIME_ERROR', `stage1 ns: "${verb}" is not implemented yet`, {
    hint: 'run pods in the foreground with gantry run for now',
  });
}

export function nsStage1(ctx: Context): Stage1 {
  return {
    name: 'ns',
    run: (pod, options) => runPod(ctx, pod, options),
    gc: (pod) => gcPod(ctx, pod),
    status: async () => notYet('status'),
    enter: async () => notYet('enter'),
    stop: async () => notYet('stop'),
    appAdd: async () => notYet('app add'),
    appStart: async () => notYet('app start'),
    appStop: async () => notYet('app stop'),
    appRm: async () => notYet('app rm'),
  };
}

export { containerId, resolveRuntime, runPod, gcPod } from './run.js';
export { buildAppSpec, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS } from './spec.js';
export { defaultSeccompProfile } from './seccomp.js';
export { ensureCgroupLayout, detectCgroups } from './cgroups.js';
