/**
 * Worker side of unpack-thread.ts: runs one unpack job at a time, feeding the
 * received bytes to SnapshotStore.unpack. The bytes come from
 * ContentStore.ingest, which checks the blob digest before the caller ends
 * the feed, so the unpacker does not hash them again.
 */
import { parentPort } from 'node:worker_threads';
import { PassThrough } from 'node:stream';
import { errnoCode, isGantryError } from '../errors.js';
import { SnapshotStore } from './snapshots.js';
import type { WorkerReply, WorkerRequest } from './unpack-thread.js';

const port = parentPort!;
const reply = (message: WorkerReply) => port.postMessage(message);
let feed: PassThrough | undefined;

port.on('message', (request: WorkerRequest) => {
  if (request.type === 'start') {
    const job = request.job;
    const current = new PassThrough({ highWaterMark: 1 << 20 });
    feed = current;
    new SnapshotStore(job.storeRoot)
      .unpack(job.layer, current, job.parentChainId, job.expectedDiffId, undefined, true)
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
      );
    return;
  }
  const current = feed;
  if (!current) return;
  if (request.type === 'data') {
    const chunk = Buffer.from(request.chunk.buffer, request.chunk.byteOffset, request.chunk.byteLength);
    current.write(chunk, () => reply({ type: 'consumed', bytes: chunk.length }));
  } else if (request.type === 'end') {
    current.end();
  } else {
    current.destroy(new Error(request.message));
  }
});
