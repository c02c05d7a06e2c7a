/**
 * gantry as a library (`import { ... } from 'gantry'`): the operations the
 * CLI runs, for embedders. Every call takes a Context (createContext) and
 * throws GantryError with a stable code; nothing here prints.
 *
 * Typical use: createContext -> Store.open + fetchImage to pull; preparePod
 * (then 'run') + startPod to run; listPods/findPod/podStatus to look;
 * stage1For(ctx, requireRunning(pod, 'stop')).stop(...) to stop; removePod
 * and gcPods to clean up.
 *
 * This module loads the whole runtime (SQLite, FFI) when imported. The CLI
 * does not import it: its commands load only the modules they need.
 */
export * from './errors.js';
export * from './context.js';

// Images.
export { fetchImage, type FetchOptions, type FetchResult, type PullPolicy } from './image/fetch.js';
export { parseReference, formatReference, type ImageReference, type DockerReference } from './image/reference.js';
export { hostPlatform, type Platform, type ImageConfig, type ImageSource } from './image/model.js';
export { findStoredImage, requireStoredImage } from './image/lookup.js';
export { exportOciArchive, exportAci } from './image/export.js';
export { Store, type GcOptions as ImageGcOptions, type GcReport as ImageGcReport } from './store/store.js';
export type { ImageRecord } from './store/metadata.js';

// Pods.
export { preparePod, type PodRequest, type AppRequest, type PreparedPod } from './pod/prepare.js';
export { startPod, type StartOptions, type LockedPod } from './pod/run.js';
export {
  listPods, findPod, podStatus, requireRunning, removePod, gcPods, waitForExit,
  DEFAULT_GC_GRACE_MS, DEFAULT_EXPIRE_PREPARED_MS,
  type PodInfo, type PodState, type PodStatusView, type GcOptions as PodGcOptions, type GcAction as PodGcAction,
} from './pod/pods.js';
export { addApp, startApp, stopApp, removeApp } from './pod/apps.js';
export type { VolumeRecord, PodManifest } from './pod/manifest.js';
export { parseNetFlag, parsePortFlag, type NetSpec, type PortMapping } from './net/flags.js';

// stage1: the executor a pod was prepared for.
export { stage1For, loadStage1, parseStage1Name, type Stage1Name } from './pod/stage1.js';
export type { Stage1, PodSpec, PodRef, PodNet, PodDns, HostsEntry, AppSpec, PodResult, PodStatus, AppResult, AppStatus, StopOptions, EnterOptions } from './stage1/abi.js';
