/**
 * Unpacking a layer on a worker thread. Extraction is a long run of small
 * synchronous file-system calls plus decompression and hashing; on the main
 * thread it would serialise with the download, the blob writes and the other
 * layers. A worker per layer lets them overlap.
 *
 * Lifecycle: `startUnpack()` spawns the worker; the caller feeds it the blob's
 * bytes with `write()` (awaited: a credit scheme bounds what is in flight) and
 * `end()`, or aborts it with `abort()`; `result` settles once the worker has
 * renamed the snapshot into place or removed its temp dir. GantryErrors cross
 * the thread boundary with their code and hint.
 */
import { Worker } from 'node:worker_threads';
import { GantryError, type ErrorCode } from '../errors.js';
import type { Digest } from '../image/model.js';
import type { UnpackLayer, UnpackResult } from './snapshots.js';

/** Bytes sent to the worker but not yet taken by its extractor. */
const MAX_IN_FLIGHT = 8 << 20;

export interface UnpackJob {
  storeRoot: string;
  layer: UnpackLayer;
  parentChainId: Digest | undefined;
  expectedDiffId: Digest | undefined;
}

export type WorkerRequest = { type: 'data'; chunk: Uint8Array } | { type: 'end' } | { type: 'abort'; message: string };
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

export function startUnpack(job: UnpackJob): ThreadedUnpack {
  const worker = new Worker(new URL('./unpack-thread-worker.js', import.meta.url), { workerData: job });
  let inFlight = 0;
  let waiting: (() => void) | undefined;
  let failed: Error | undefined;

  const result = new Promise<UnpackResult>((resolve, reject) => {
    const fail = (err: Error) => {
      failed = err;
      waiting?.();
      reject(err);
    };
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type === 'consumed') {
        inFlight -= reply.bytes;
        if (inFlight < MAX_IN_FLIGHT) waiting?.();
      } else if (reply.type === 'done') {
        resolve(reply.result);
      } else {
        const e = reply.error;
        fail(e.code ? new GantryError(e.code, e.message, e.hint ? { hint: e.hint } : {}) : Object.assign(new Error(e.message), { code: e.errno }));
      }
    });
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the unpack worker exited with code ${code} before finishing`)));
  });
  result.catch(() => {});

  return {
    async write(chunk) {
      if (failed) throw failed;
      inFlight += chunk.length;
      worker.postMessage({ type: 'data', chunk } satisfies WorkerRequest);
      while (inFlight >= MAX_IN_FLIGHT && !failed) await new Promise<void>((r) => (waiting = r));
      waiting = undefined;
      if (failed) throw failed;
    },
    end() {
      worker.postMessage({ type: 'end' } satisfies WorkerRequest);
    },
    abort(reason) {
      worker.postMessage({ type: 'abort', message: reason } satisfies WorkerRequest);
    },
    result,
  };
}
