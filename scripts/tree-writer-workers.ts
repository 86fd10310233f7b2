import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { settleAll, type TreeWrite, type TreeWriter } from '../functions/_shared/stores/local-store.ts';
import { NO_DIR_SYNC } from '../functions/_shared/stores/dir-sync.ts';

/** A thread's share of a TreeWrite (scripts/tree-write-worker.mjs): folders to make, files to write and flush, folders to sync. */
type Part = { mkdir?: string[]; files?: TreeWrite['files']; sync?: string[] };

/**
 * The Node server's TreeWriter: a few worker threads doing a save's writes and flushes with synchronous calls.
 * Through `node:fs/promises` every mkdir, open, write, flush and close of a save (~400 for a typical generation) is
 * a thread-pool round trip that needs a turn of the event loop, so while the event loop is busy (JSON, PGlite) the
 * disk waits: 8 saves in flight got 1.3x the saves/s of one. Here a save's files go out as one message per thread,
 * split by folder (one folder's entries are made by one thread, one at a time: see `perFolder` in local-store.ts),
 * and flushed in parallel across the threads. The same fsyncs as `inThreadWriter`: test/local-store.test.ts
 * traces both.
 */
export class WorkerTreeWriter implements TreeWriter {
  private readonly workers: { worker: Worker; pending: Map<number, { resolve: () => void; reject: (e: Error) => void }> }[] = [];
  private next = 0;

  /** The threads start with the first write: a server that never saves never starts them. */
  constructor(readonly threads = 4) {}

  private spawn() {
    const slot = { worker: new Worker(new URL('./tree-write-worker.mjs', import.meta.url), { workerData: { noDirSync: [...NO_DIR_SYNC] } }), pending: new Map<number, { resolve: () => void; reject: (e: Error) => void }>() };
    slot.worker.unref();
    slot.worker.on('message', ({ id, error }: { id: number; error?: { message: string } & Record<string, unknown> }) => {
      const call = slot.pending.get(id);
      if (!call) return; // failed already, with its thread (replace)
      slot.pending.delete(id);
      if (error) call.reject(Object.assign(new Error(error.message), error));
      else call.resolve();
    });
    // A thread that dies fails what it held and is replaced; the next writes go to the new one.
    slot.worker.on('error', (err) => this.replace(slot, err));
    slot.worker.on('exit', (code) => this.replace(slot, new Error(`[storage] a write thread exited (${code})`)));
    return slot;
  }

  private replace(slot: WorkerTreeWriter['workers'][number], err: Error) {
    const i = this.workers.indexOf(slot);
    if (i < 0) return;
    for (const call of slot.pending.values()) call.reject(err);
    slot.pending.clear();
    this.workers[i] = this.spawn();
  }

  /** Sends a part to the thread with the fewest parts waiting. */
  private run(part: Part): Promise<void> {
    while (this.workers.length < this.threads) this.workers.push(this.spawn());
    const slot = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ id, part });
    });
  }

  async write({ folders, files }: TreeWrite): Promise<void> {
    await this.run({ mkdir: folders });
    // Each folder's files to one thread, the threads' loads balanced by bytes; folders' syncs spread the same way.
    const parts = Array.from({ length: Math.min(this.threads, files.length) }, () => ({ files: [] as TreeWrite['files'], bytes: 0 }));
    const byFolder = new Map<string, TreeWrite['files']>();
    for (const f of files) {
      const group = byFolder.get(dirname(f.path));
      if (group) group.push(f);
      else byFolder.set(dirname(f.path), [f]);
    }
    const groups = [...byFolder.values()].map((g) => ({ files: g, bytes: g.reduce((n, f) => n + f.data.byteLength + 512, 0) }));
    for (const group of groups.sort((a, b) => b.bytes - a.bytes)) {
      const part = parts.reduce((a, b) => (b.bytes < a.bytes ? b : a));
      part.files.push(...group.files);
      part.bytes += group.bytes;
    }
    await settleAll(parts.map((p) => this.run({ files: p.files })));
    const syncs = Array.from({ length: this.threads }, (_, k) => folders.filter((_, i) => i % this.threads === k)).filter((s) => s.length);
    await settleAll(syncs.map((sync) => this.run({ sync })));
  }

  async close(): Promise<void> {
    const workers = this.workers.splice(0);
    await Promise.all(workers.map(({ worker }) => worker.terminate()));
  }
}

