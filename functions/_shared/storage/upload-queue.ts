import { randomUUID } from 'node:crypto';
import { sha256Hex } from '../archive/manifest.ts';
import type { Database, Tx } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import * as outbox from '../db/outbox-repo.ts';
import type { Backlog, Claim } from '../db/outbox-repo.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalGenerationStorage } from './generation-storage.ts';

export interface UploadQueueOptions {
  /** Uploads at once; the rest wait in line. */
  concurrency: number;
  /** A row with no copy anywhere we can find, untouched this long (so not a save under way), is marked lost. */
  lostAfterMs: number;
  /** How long a claim on an outbox row holds unless renewed (every third of it while the upload runs). */
  leaseMs: number;
  now?: () => number;
  /**
   * Keeps the runtime alive while background work runs: `EdgeRuntime.waitUntil` on Supabase Edge, where a
   * worker may otherwise stop once the response is sent. Node needs nothing.
   */
  keepAlive?: (work: Promise<unknown>) => void;
}

/** What one drain call may spend: it must fit an Edge Function's limits (2 s CPU, 256 MB, 150 s wall clock). */
export interface DrainBudget {
  maxMs: number;
  maxBytes: number;
  maxRows: number;
}

export const EDGE_DRAIN_BUDGET: DrainBudget = { maxMs: 60_000, maxBytes: 64 * 1024 * 1024, maxRows: 50 };

export interface DrainReport {
  claimed: number;
  uploaded: number;
  failed: number;
  skipped: number;
  bytes: number;
  duration_ms: number;
  backlog: Backlog;
}

export interface TriageReport {
  /** Rows this host held a verified local copy of, now staged in the outbox. */
  adopted: number;
  /** Rows not marked uploaded whose bucket object was there and verified: now uploaded. */
  reconciled: number;
  /** Rows with no copy anywhere (no outbox row, no local copy here, no object that verifies). */
  markedLost: number;
}

/** Marks an upload error no retry will fix soon (kept in upload_error): retried only every PERMANENT_BACKOFF_MS. */
const PERMANENT = 'permanent: ';
const PERMANENT_BACKOFF_MS = 6 * 3600_000;

/** Exponential backoff between attempts at one row: 10 s, 20 s, … at most 5 minutes. */
export function backoffMs(attempts: number): number {
  return Math.min(300_000, 10_000 * 2 ** Math.max(0, attempts - 1));
}

export type UploadOutcome = 'uploaded' | 'failed' | 'skipped';

/**
 * Moves archives from the upload outbox (Postgres) to the bucket. Any host may upload any row: it claims it with a
 * lease (expired leases are anyone's), takes the bytes from its own verified local copy or else from the outbox,
 * uploads, downloads the object back to verify size and sha256, and only then, in one transaction, marks the
 * generation `uploaded` and removes the outbox row. A failure gives the claim back with a backoff.
 *
 * Two ways in: `enqueue` (the save's own fast path, in process, bounded concurrency) and `drain` (the safety net:
 * the Node retry timer, and on Supabase pg_cron calling storage-maintenance/drain when rows are due).
 */
export class UploadQueue {
  private readonly waiting: string[] = [];
  /**
   * Queued ids, with the row when the caller had it fresh (a save that just committed: one query less), and
   * whether this drainer already holds its claim (staged by `stageClaimed`: one transaction less).
   */
  private readonly queued = new Map<string, { fresh?: GenerationRecord; claimed: boolean }>();
  /** Uploads under way in this process, by generation: a second ask for the same one joins the first. */
  private readonly inFlight = new Map<string, Promise<UploadOutcome>>();
  private running = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly now: () => number;
  /** This drainer's name in leases. */
  readonly owner = `drainer-${randomUUID()}`;

  constructor(
    private readonly db: Database,
    private readonly local: LocalGenerationStorage,
    private readonly cloud: CloudStore,
    private readonly log: Logger,
    private readonly opts: UploadQueueOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Inside a save's transaction: stages the archive already claimed by this drainer, whose upload `enqueue(record,
   * { claimed: true })` starts once the transaction has committed.
   */
  stageClaimed(tx: Tx, record: GenerationRecord, archive: Uint8Array): Promise<void> {
    return outbox.stage(tx, record.id, record.archiveSha256, archive, new Date(this.now()), { owner: this.owner, leaseMs: this.opts.leaseMs });
  }

  /** Queues a generation's upload (once, however often it is asked). */
  enqueue(generation: string | GenerationRecord, opts: { claimed?: boolean } = {}): void {
    const generationId = typeof generation === 'string' ? generation : generation.id;
    if (this.stopped || this.queued.has(generationId)) return;
    const fresh = typeof generation === 'string' ? undefined : generation;
    this.queued.set(generationId, { fresh, claimed: Boolean(fresh && opts.claimed) });
    this.waiting.push(generationId);
    this.pump();
  }

  /**
   * Stages what this host alone holds (rows not uploaded, without an outbox row, whose verified local copy is
   * here: e.g. saved while cloud was off), then queues every outbox row that is due. Returns how many it queued.
   */
  async resume(limit = 1000): Promise<number> {
    for await (const r of this.unstaged(limit, false)) await this.adopt(r);
    const due = await this.db.asService((tx) => outbox.listDue(tx, new Date(this.now()), limit));
    for (const id of due) this.enqueue(id);
    if (due.length) this.log.info('uploads resumed', { count: due.length });
    return due.length;
  }

  /**
   * Sorts the rows not uploaded that have no outbox row: a verified local copy here is staged (adopted); an object
   * in the bucket that verifies marks the row uploaded (the upload landed, its reply did not); with neither, a row
   * untouched for `lostAfterMs` is marked `lost` and logged as an error. Rows already `lost` get one look each for a
   * local copy, in pages, so however many other hosts marked lost, this host's own are found. Run by maintenance.
   */
  async triage(pageSize = 1000): Promise<TriageReport> {
    const report: TriageReport = { adopted: 0, reconciled: 0, markedLost: 0 };
    for await (const r of this.unstaged(pageSize, false)) {
      if (await this.adopt(r)) report.adopted++;
      else if (await this.bucketHolds(r).catch(() => false)) {
        if (await this.db.asService((tx) => repo.markUploaded(tx, r.id, r.archiveSha256))) {
          report.reconciled++;
          this.log.warn('upload found verified in the bucket: marked uploaded', { generation_id: r.id, key: r.storageKey });
        }
      } else if (this.now() - r.updatedAt.getTime() > this.opts.lostAfterMs) {
        await this.db.asService((tx) => repo.markLost(tx, r.id, 'no copy anywhere: no outbox row, no local copy, no object that verifies'));
        this.log.error('generation lost: no copy anywhere', { generation_id: r.id, key: r.storageKey });
        report.markedLost++;
      }
    }
    for await (const r of this.unstaged(pageSize, true)) if (await this.adopt(r)) report.adopted++;
    return report;
  }

  /** Rows not uploaded and not staged (`lost` ones, or the others), page by page in id order. */
  private async *unstaged(pageSize: number, lost: boolean): AsyncGenerator<GenerationRecord> {
    for (let after: string | undefined; ; ) {
      const page = await this.db.asService((tx) => repo.listUnstaged(tx, pageSize, { lost, afterId: after }));
      yield* page;
      if (page.length < pageSize) return;
      after = page.at(-1)!.id;
    }
  }

  /** Stages a row without an outbox row whose verified local copy this host holds; whether it did. */
  private async adopt(r: GenerationRecord): Promise<boolean> {
    const bytes = await this.local.verifiedLocalArchive(r);
    if (!bytes) return false;
    await this.db.asService(async (tx) => {
      await outbox.stage(tx, r.id, r.archiveSha256, bytes, new Date(this.now()));
      await repo.markPending(tx, r.id);
    });
    this.log.info('local copy staged for upload', { generation_id: r.id, was: r.uploadStatus });
    return true;
  }

  /**
   * Claims due outbox rows, one per worker at a time (`concurrency` workers), and uploads them until the budget is
   * spent or nothing is due. Answers with what it did and the backlog left.
   */
  async drain(budget: DrainBudget): Promise<DrainReport> {
    const started = this.now();
    const report = { claimed: 0, uploaded: 0, failed: 0, skipped: 0, bytes: 0 };
    const more = () => !this.stopped && report.claimed < budget.maxRows && report.bytes < budget.maxBytes && this.now() - started < budget.maxMs;
    // `concurrency` workers, each claiming one due row at a time: none waits for a slower neighbour's upload.
    const worker = async () => {
      while (more()) {
        const [claim] = await this.db.asService((tx) => outbox.claimDue(tx, this.owner, new Date(this.now()), this.opts.leaseMs, 1));
        if (!claim) return;
        report.claimed++;
        report.bytes += claim.archiveSizeBytes;
        report[await this.joined(claim.generationId, () => this.process(claim))]++;
      }
    };
    await Promise.all(Array.from({ length: this.opts.concurrency }, worker));
    const backlog = await this.backlog();
    return { ...report, duration_ms: Math.round(this.now() - started), backlog };
  }

  backlog(): Promise<Backlog> {
    return this.db.asService((tx) => outbox.backlog(tx, new Date(this.now())));
  }

  /** Resolves when nothing is waiting or running. */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Takes no more work and waits for the uploads under way; the rest stay in the outbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.waiting.length = 0;
    this.queued.clear();
    await this.idle();
    await Promise.allSettled(this.inFlight.values());
  }

  /** Claims one generation's outbox row and uploads it, unless another drainer holds it. Never throws. */
  uploadOne(generationId: string, fresh?: GenerationRecord, claimed = false): Promise<UploadOutcome> {
    return this.joined(generationId, async () => {
      const claim =
        claimed && fresh
          ? { generationId, archiveSha256: fresh.archiveSha256, archiveSizeBytes: fresh.archiveSizeBytes, attempts: 1 }
          : await this.db.asService((tx) => outbox.claimOne(tx, generationId, this.owner, new Date(this.now()), this.opts.leaseMs));
      return claim ? this.process(claim, fresh) : 'skipped';
    });
  }

  private joined(generationId: string, fn: () => Promise<UploadOutcome>): Promise<UploadOutcome> {
    let work = this.inFlight.get(generationId);
    if (!work) {
      work = fn()
        .catch((err) => (this.log.error('upload step failed', { generation_id: generationId, error: err }), 'failed' as const))
        .finally(() => this.inFlight.delete(generationId));
      this.inFlight.set(generationId, work);
    }
    return work;
  }

  /** One claimed row, start to finish. The outcome is in the rows and the log. */
  private async process(claim: Claim, fresh?: GenerationRecord): Promise<UploadOutcome> {
    const record = fresh?.archiveSha256 === claim.archiveSha256 ? fresh : await this.db.asService((tx) => repo.findGeneration(tx, claim.generationId));
    if (!record) return 'skipped'; // deleted: the outbox row went with it
    if (record.uploadStatus === 'uploaded') {
      await this.db.asService((tx) => outbox.remove(tx, record.id));
      return 'skipped';
    }
    const fields = { generation_id: record.id, project_id: record.projectId, key: record.storageKey, attempt: claim.attempts };
    // Renewed while the upload runs, so a short lease only ever expires for a drainer that died.
    const renewal = setInterval(() => {
      void this.db.asService((tx) => outbox.renew(tx, record.id, this.owner, new Date(this.now()), this.opts.leaseMs)).catch(() => {});
    }, Math.max(500, this.opts.leaseMs / 3));
    try {
      if (record.archiveSha256 !== claim.archiveSha256) throw new Error('outbox row does not hold this generation\'s archive');
      // Never over an object not looked at: one already there (an upload whose reply, or whose commit, was lost)
      // is kept if it verifies, and replaced only if it does not.
      const bytes = await this.bytesOf(record);
      const fresh = await this.cloud.upload(record.storageKey, bytes, { overwrite: false });
      let verified = await this.bucketHolds(record);
      if (!verified && !fresh) {
        this.log.warn('bucket object does not match the record; replacing it', fields);
        await this.cloud.upload(record.storageKey, bytes);
        verified = await this.bucketHolds(record);
      }
      if (!verified) throw new Error('verification failed: the bucket does not hold the recorded archive');
      const landed = !fresh;
      const marked = await this.db.asService(async (tx) => {
        const ok = await repo.markUploaded(tx, record.id, record.archiveSha256);
        await outbox.remove(tx, record.id);
        return ok;
      });
      if (!marked) {
        // Deleted while we were uploading: the delete may have run before our upload landed. Take it back.
        await this.cloud.remove([record.storageKey]);
        this.log.info('generation deleted during its upload; object removed', fields);
        return 'skipped';
      }
      this.log.info(landed ? 'upload found verified in the bucket' : 'upload verified', { ...fields, bytes: record.archiveSizeBytes });
      return 'uploaded';
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Too large for the bucket: retrying soon changes nothing. The bytes stay in the outbox, so nothing is lost.
      const permanent = err instanceof AppError && err.code === ErrorCode.PayloadTooLarge;
      const next = new Date(this.now() + (permanent ? PERMANENT_BACKOFF_MS : backoffMs(claim.attempts)));
      const error = permanent ? `${PERMANENT}${message}` : message;
      await this.db
        .asService(async (tx) => {
          await outbox.release(tx, record.id, this.owner, error, next);
          await repo.markUploadFailed(tx, record.id, error);
        })
        .catch((e) => this.log.error('could not record a failed upload; its lease will expire', { ...fields, error: e }));
      this.log.warn('upload failed', { ...fields, error: message, next_attempt_at: next.toISOString() });
      return 'failed';
    } finally {
      clearInterval(renewal);
    }
  }

  /** The archive's exact bytes: this host's local copy if it verifies, else the outbox's if they do. */
  private async bytesOf(record: GenerationRecord): Promise<Uint8Array> {
    const local = await this.local.verifiedLocalArchive(record);
    if (local) return local;
    const staged = await this.stagedArchive(record);
    if (!staged) throw new Error('no copy to upload that passes its sha256: not in the outbox, not on this host');
    return staged;
  }

  /** The outbox's bytes for this record, if they are there and match its sha256 (a mismatch is logged, never used). */
  async stagedArchive(record: GenerationRecord): Promise<Uint8Array | undefined> {
    const staged = await this.db.asService((tx) => outbox.stagedBytes(tx, record.id));
    if (!staged) return undefined;
    if (sha256Hex(staged.bytes) === record.archiveSha256) return staged.bytes;
    this.log.error('outbox bytes do not match their record; not used', { generation_id: record.id });
    return undefined;
  }

  /** Whether the bucket's object is there and is exactly the recorded archive (downloaded back and hashed). */
  private async bucketHolds(record: GenerationRecord): Promise<boolean> {
    let back: Uint8Array;
    try {
      back = await this.cloud.download(record.storageKey);
    } catch (err) {
      if (err instanceof AppError && err.code === ErrorCode.CloudNotFound) return false;
      throw err;
    }
    return back.byteLength === record.archiveSizeBytes && sha256Hex(back) === record.archiveSha256;
  }

  private pump(): void {
    while (this.running < this.opts.concurrency && this.waiting.length > 0) {
      const id = this.waiting.shift()!;
      this.running++;
      const { fresh, claimed } = this.queued.get(id)!;
      const work = this.uploadOne(id, fresh, claimed).finally(() => {
        this.running--;
        this.queued.delete(id);
        if (!this.stopped) this.pump();
        if (this.running === 0 && this.waiting.length === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
      this.opts.keepAlive?.(work);
    }
  }
}
