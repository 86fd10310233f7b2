import { sha256Hex } from '../archive/manifest.ts';
import type { Database } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalGenerationStorage } from './generation-storage.ts';

export interface UploadQueueOptions {
  /** Uploads at once; the rest wait in line. */
  concurrency: number;
  /** A row without a local copy, untouched this long, can never be uploaded: it is marked lost. */
  lostAfterMs: number;
  now?: () => number;
  /**
   * Keeps the runtime alive while background work runs: `EdgeRuntime.waitUntil` on Supabase Edge, where a
   * worker may otherwise stop once the response is sent. Node needs nothing.
   */
  keepAlive?: (work: Promise<unknown>) => void;
}

/** Marks an upload error no retry can fix (kept in upload_error, so triage skips the row). */
const PERMANENT = 'permanent: ';

export type UploadOutcome = 'uploaded' | 'failed' | 'skipped';

/**
 * Uploads saved generations to the bucket in the background, durably: the row says pending → uploaded (only
 * after the bucket's copy is downloaded back and its size and sha256 match) or failed (attempts, last error).
 * A crash loses nothing: `resume()` finds every row not yet uploaded whose local copy exists and queues it again.
 */
export class UploadQueue {
  private readonly waiting: string[] = [];
  /** Queued ids, with the row when the caller had it fresh (a save that just committed): one query less. */
  private readonly queued = new Map<string, GenerationRecord | undefined>();
  /** Uploads under way, by generation: a second ask for the same one (maintenance, the queue) joins the first. */
  private readonly inFlight = new Map<string, Promise<UploadOutcome>>();
  private running = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly now: () => number;

  constructor(
    private readonly db: Database,
    private readonly local: LocalGenerationStorage,
    private readonly cloud: CloudStore,
    private readonly log: Logger,
    private readonly opts: UploadQueueOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Queues a generation (once, however often it is asked), by id or by the row a save just committed. */
  enqueue(generation: string | GenerationRecord): void {
    const generationId = typeof generation === 'string' ? generation : generation.id;
    if (this.stopped || this.queued.has(generationId)) return;
    this.queued.set(generationId, typeof generation === 'string' ? undefined : generation);
    this.waiting.push(generationId);
    this.pump();
  }

  /**
   * Sorts the generations not yet in the bucket: those this server can upload (it holds the local copy), and
   * those that never can be — no local copy, and untouched for `lostAfterMs` (so not an upload under way
   * elsewhere) — which it marks `lost`, so they stop filling every retry batch.
   */
  async triage(limit = 1000): Promise<{ uploadable: string[]; markedLost: number }> {
    const rows = await this.db.asService((tx) => repo.listNotUploaded(tx, limit));
    const uploadable: string[] = [];
    let markedLost = 0;
    for (const r of rows) {
      if (r.uploadError?.startsWith(PERMANENT)) continue; // the bucket refused it for good; an operator must act
      if (await this.local.hasLocalCopy(r)) uploadable.push(r.id);
      else if (r.uploadStatus !== 'lost' && this.now() - r.updatedAt.getTime() > this.opts.lostAfterMs) {
        await this.db.asService((tx) => repo.markLost(tx, r.id, 'no local copy left and never uploaded'));
        this.log.error('upload can never succeed: marked lost', { generation_id: r.id, key: r.storageKey });
        markedLost++;
      }
    }
    return { uploadable, markedLost };
  }

  /** Queues every generation this server can upload; returns how many. */
  async resume(limit = 1000): Promise<number> {
    const { uploadable } = await this.triage(limit);
    for (const id of uploadable) this.enqueue(id);
    if (uploadable.length) this.log.info('uploads resumed', { count: uploadable.length });
    return uploadable.length;
  }

  /** Resolves when nothing is waiting or running. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Takes no more work and waits for the uploads under way; the rest stay pending in the database. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.waiting.length = 0;
    this.queued.clear();
    await this.idle();
  }

  /** One upload, start to finish; never two of one generation at once. Never throws: the outcome is in the row and the log. */
  uploadOne(generationId: string, fresh?: GenerationRecord): Promise<UploadOutcome> {
    let work = this.inFlight.get(generationId);
    if (!work) {
      work = this.upload(generationId, fresh).finally(() => this.inFlight.delete(generationId));
      this.inFlight.set(generationId, work);
    }
    return work;
  }

  private async upload(generationId: string, fresh?: GenerationRecord): Promise<UploadOutcome> {
    const record = fresh ?? (await this.db.asService((tx) => repo.findGeneration(tx, generationId)));
    if (!record || record.uploadStatus === 'uploaded') return 'skipped';
    const fields = { generation_id: record.id, project_id: record.projectId, key: record.storageKey };
    try {
      const bytes = await this.local.localArchive(record);
      if (!bytes) throw new Error('no local copy to upload');
      await this.cloud.upload(record.storageKey, bytes);
      await this.verify(record);
      if (!(await this.db.asService((tx) => repo.markUploaded(tx, record.id)))) {
        // Deleted while we were uploading: the delete may have run before our upload landed. Take it back.
        await this.cloud.remove([record.storageKey]);
        this.log.info('generation deleted during its upload; object removed', fields);
        return 'skipped';
      }
      this.log.info('upload verified', { ...fields, bytes: bytes.byteLength, attempts: record.uploadAttempts + 1 });
      return 'uploaded';
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Too large for the bucket: no retry will ever change that.
      const permanent = err instanceof AppError && err.code === ErrorCode.PayloadTooLarge;
      await this.db.asService((tx) => repo.markUploadFailed(tx, record.id, permanent ? `${PERMANENT}${message}` : message, permanent ? 'lost' : 'failed')).catch(() => {});
      this.log.warn('upload failed', { ...fields, attempts: record.uploadAttempts + 1, error: message });
      return 'failed';
    }
  }

  /** The bucket's copy, downloaded back, must be the archive we recorded. */
  private async verify(record: GenerationRecord): Promise<void> {
    const back = await this.cloud.download(record.storageKey);
    if (back.byteLength !== record.archiveSizeBytes || sha256Hex(back) !== record.archiveSha256) {
      throw new Error(`verification failed: the bucket holds ${back.byteLength} bytes with another sha256`);
    }
  }

  private pump(): void {
    while (this.running < this.opts.concurrency && this.waiting.length > 0) {
      const id = this.waiting.shift()!;
      this.running++;
      const work = this.uploadOne(id, this.queued.get(id)).finally(() => {
        this.running--;
        this.queued.delete(id);
        if (!this.stopped) this.pump();
        if (this.running === 0 && this.waiting.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
      this.opts.keepAlive?.(work);
    }
  }
}
