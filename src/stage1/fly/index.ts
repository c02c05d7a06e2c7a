/**
 * stage1 `fly` (rkt's stage1-fly): the app runs in its image's rootfs in a
 * mount namespace only — the host's network, PID, IPC and UTS namespaces —
 * with every capability gantry has, no seccomp filter, no masked paths and
 * the host's /dev, /proc and /sys. It is for system tools that need the
 * host, not for isolation. No cgroup limits unless asked.
 *
 * Implementation: stage1 ns's machinery (overlay rootfs, the same OCI
 * runtime, conmon for detached pods) with a fly spec (spec.ts `fly`). The
 * app verbs are not supported: a fly pod has no shared namespaces to join.
 */
import type { Context } from '../../context.js';
import { GantryError } from '../../errors.js';
import type { Stage1 } from '../abi.js';
import { enterApp, gcPod, podStatus, runPod, stopPod } from '../ns/run.js';

function unsupported(verb: string): never {
  throw new GantryError('RUNTIME_ERROR', `stage1 fly: "${verb}" is not supported by fly`, {
    hint: 'use --stage1-name=ns for pods whose apps change while they run',
  });
}

export function flyStage1(ctx: Context): Stage1 {
  return {
    name: 'fly',
    run: (pod, options) => runPod(ctx, { ...pod, net: 'host' }, options, 'fly'),
    status: (pod) => podStatus(ctx, pod),
    gc: (pod) => gcPod(ctx, pod),
    enter: (pod, app, command, options) => enterApp(ctx, pod, app, command, options),
    stop: (pod, options) => stopPod(ctx, pod, options),
    appAdd: async () => unsupported('app add'),
    appStart: async () => unsupported('app start'),
    appStop: async () => unsupported('app stop'),
    appRm: async () => unsupported('app rm'),
  };
}
