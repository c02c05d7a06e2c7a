/**
 * Worker side of unpack-thread.ts: feeds received bytes to SnapshotStore.unpack.
 * The bytes come from ContentStore.ingest, which checks the blob digest before
 * the caller ends the feed, so the unpacker does not hash them again.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PassThrough } from 'node:stream';
import { errnoCode, isGantryError } from '../errors.js';
import { SnapshotStore } from './snapshots.js';
import type { UnpackJob, WorkerReply, WorkerRequest } from './unpack-thread.js';

const job = workerData as UnpackJob;
const port = parentPort!;
const feed = new PassThrough({ highWaterMark: 1 << 20 });
const reply = (message: WorkerReply) => port.postMessage(message);

port.on('message', (request: WorkerRequest) => {
  if (request.type === 'data') {
    const chunk = Buffer.from(request.chunk.buffer, request.chunk.byteOffset, request.chunk.byteLength);
    feed.write(chunk, () => reply({ type: 'consumed', bytes: chunk.length }));
  } else if (request.type === 'end') {
    feed.end();
  } else {
    feed.destroy(new Error(request.message));
  }
});

new SnapshotStore(job.storeRoot)
  .unpack(job.layer, feed, job.parentChainId, job.expectedDiffId, undefined, true)
  .then(
    (result) => reply({ type: 'done', result }),
    (err: unknown) => {
      const e = err as Error;
      reply({
        type: 'error',
        error: isGantryError(e)
          ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }
          : { message: e?.message ?? String(err), ...(errnoCode(err) ? { errno: errnoCode(err)! } : {}) },
      });
    },
  )
  .finally(() => port.close());
