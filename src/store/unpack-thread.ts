/**
 * Unpacking layers on worker threads. Extraction is a long run of small
 * synchronous file-system calls plus decompression and hashing; on the main
 * thread it would serialise with the download, the blob writes and the other
 * layers. A small pool of workers (one per core, at most UNPACK_THREADS)
 * takes layers one after another, so a many-layer image pays for a worker's
 * start-up (its own module loading) once per thread, not once per layer.
 *
 * Lifecycle of one job: `startUnpack()` queues it; the caller feeds the
 * blob's bytes with `write()` (awaited: it waits for a free worker, then a
 * credit scheme bounds what is in flight) and `end()`, or gives up with
 * `abort()`; `result` settles once the worker has renamed the snapshot into
 * place or removed its temp dir. Idle workers are unref'd so they never keep
 * the process alive. GantryErrors cross the thread boundary with their code
 * and hint.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { GantryError, type ErrorCode } from '../errors.js';
import type { Digest } from '../image/model.js';
import type { UnpackLayer, UnpackResult } from './snapshots.js';

/** Bytes sent to the worker but not yet taken by its extractor. */
const MAX_IN_FLIGHT = 8 << 20;
const UNPACK_THREADS = Math.max(1, Math.min(4, os.availableParallelism()));

export interface UnpackJob {
  storeRoot: string;
  layer: UnpackLayer;
  parentChainId: Digest | undefined;
  expectedDiffId: Digest | undefined;
}

export type WorkerRequest =
  | { type: 'start'; job: UnpackJob }
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' }
  | { type: 'abort'; message: string };
export type WorkerReply =
  | { type: 'consumed'; bytes: number }
  | { type: 'done'; result: UnpackResult }
  | { type: 'error'; error: { code?: ErrorCode; message: string; hint?: string; errno?: string } };

export interface ThreadedUnpack {
  write(chunk: Buffer): Promise<void>;
  end(): void;
  abort(reason: string): void;
  readonly result: Promise<UnpackResult>;
}

interface PoolWorker {
  worker: Worker;
  /** The job this worker runs, or undefined when idle. */
  current: Job | undefined;
}

class Job implements ThreadedUnpack {
  private inFlight = 0;
  private wake: (() => void) | undefined;
  private failed: Error | undefined;
  private assigned: PoolWorker | undefined;
  /** Requests made before a worker took the job. */
  private readonly pending: WorkerRequest[] = [];
  readonly result: Promise<UnpackResult>;
  private settle!: { resolve: (r: UnpackResult) => void; reject: (e: Error) => void };

  constructor(readonly job: UnpackJob) {
    this.result = new Promise<UnpackResult>((resolve, reject) => (this.settle = { resolve, reject }));
    this.result.catch(() => {});
  }

  assign(to: PoolWorker): void {
    this.assigned = to;
    to.worker.postMessage({ type: 'start', job: this.job } satisfies WorkerRequest);
    for (const request of this.pending.splice(0)) to.worker.postMessage(request);
    this.wake?.();
  }

  private send(request: WorkerRequest): void {
    if (this.assigned) this.assigned.worker.postMessage(request);
    else this.pending.push(request);
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failed) throw this.failed;
    this.inFlight += chunk.length;
    this.send({ type: 'data', chunk });
    while ((this.inFlight >= MAX_IN_FLIGHT || !this.assigned) && !this.failed) await new Promise<void>((r) => (this.wake = r));
    this.wake = undefined;
    if (this.failed) throw this.failed;
  }

  end(): void {
    this.send({ type: 'end' });
  }

  abort(reason: string): void {
    this.send({ type: 'abort', message: reason });
  }

  onReply(reply: WorkerReply): boolean {
    if (reply.type === 'consumed') {
      this.inFlight -= reply.bytes;
      if (this.inFlight < MAX_IN_FLIGHT) this.wake?.();
      return false;
    }
    if (reply.type === 'done') this.settle.resolve(reply.result);
    else {
      const e = reply.error;
      this.fail(e.code ? new GantryError(e.code, e.message, e.hint ? { hint: e.hint } : {}) : Object.assign(new Error(e.message), { code: e.errno }));
    }
    return true;
  }

  fail(err: Error): void {
    this.failed = err;
    this.wake?.();
    this.settle.reject(err);
  }
}

const workers: PoolWorker[] = [];
const queue: Job[] = [];

function dispatch(): void {
  while (queue.length > 0) {
    let free = workers.find((w) => w.current === undefined);
    if (!free && workers.length < UNPACK_THREADS) free = spawn();
    if (!free) return;
    const job = queue.shift()!;
    free.current = job;
    free.worker.ref();
    job.assign(free);
  }
}

function spawn(): PoolWorker {
  const entry: PoolWorker = { worker: new Worker(new URL('./unpack-thread-worker.js', import.meta.url)), current: undefined };
  const finish = () => {
    entry.current = undefined;
    entry.worker.unref();
    dispatch();
  };
  entry.worker.on('message', (reply: WorkerReply) => {
    if (entry.current?.onReply(reply)) finish();
  });
  const die = (err: Error) => {
    workers.splice(workers.indexOf(entry), 1);
    entry.current?.fail(err);
    entry.current = undefined;
    dispatch();
  };
  entry.worker.on('error', die);
  entry.worker.on('exit', (code) => die(new Error(`an unpack worker exited with code ${code} before finishing`)));
  workers.push(entry);
  return entry;
}

export function startUnpack(job: UnpackJob): ThreadedUnpack {
  const queued = new Job(job);
  queue.push(queued);
  dispatch();
  return queued;
}
