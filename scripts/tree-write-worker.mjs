// One thread of scripts/tree-writer-workers.ts: carries out its part of a TreeWrite with synchronous calls, so a
// whole part costs the server's event loop one message, not a turn per call. Plain JavaScript: a worker thread
// does not inherit the tsx loader. workerData.noDirSync: the codes of a folder that cannot be fsynced (skipped).
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const noDirSync = new Set(workerData.noDirSync);

/** @param {{ mkdir?: string[], files?: { path: string, data: Uint8Array }[], sync?: string[] }} part */
function write(part) {
  for (const dir of part.mkdir ?? []) mkdirSync(dir);
  for (const { path, data } of part.files ?? []) {
    const fd = openSync(path, 'w');
    try {
      for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  for (const dir of part.sync ?? []) {
    try {
      const fd = openSync(dir, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if (!noDirSync.has(err.code)) throw err;
    }
  }
}

parentPort.on('message', ({ id, part }) => {
  try {
    write(part);
    parentPort.postMessage({ id });
  } catch (err) {
    parentPort.postMessage({ id, error: { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall, path: err.path } });
  }
});
