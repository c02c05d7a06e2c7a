/**
 * stage1 `ns`: the default stage1. Apps run in their own namespaces and
 * overlay rootfs through a real OCI runtime (crun by default, runc on
 * request), sharing the pod's network, IPC and UTS namespaces (and PID with
 * pidMode 'pod'); detached apps live under conmon. See run.ts for the
 * lifecycle and docs/stage1-abi.md for the contract.
 */
import type { Context } from '../../context.js';
import type { Stage1 } from '../abi.js';
import { appAdd, appRm, appStart, appStop, enterApp, gcPod, podStatus, runPod, stopPod } from './run.js';

export function nsStage1(ctx: Context): Stage1 {
  return {
    name: 'ns',
    run: (pod, options) => runPod(ctx, pod, options, 'ns'),
    status: (pod) => podStatus(ctx, pod),
    gc: (pod) => gcPod(ctx, pod),
    enter: (pod, app, command, options) => enterApp(ctx, pod, app, command, options),
    stop: (pod, options) => stopPod(ctx, pod, options),
    appAdd: (pod, app) => appAdd(ctx, pod, app, 'ns'),
    appStart: (pod, app) => appStart(ctx, pod, app),
    appStop: (pod, app, options) => appStop(ctx, pod, app, options),
    appRm: (pod, app) => appRm(ctx, pod, app),
  };
}

export { containerId, resolveRuntime, runPod, gcPod, podStatus, stopPod, enterApp, validatePod, type Stage1Mode } from './run.js';
export { buildAppSpec, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS } from './spec.js';
export { defaultSeccompProfile } from './seccomp.js';
export { ensureCgroupLayout, detectCgroups } from './cgroups.js';
export { criRecord, rfc3339Nano } from './log.js';
