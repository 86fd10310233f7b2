import type { Database } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalStore } from '../stores/local-store.ts';
import type { Backlog } from '../db/outbox-repo.ts';
import type { DeletionReport, Deletions } from './deletions.ts';
import { applyRetention, retentionEnabled, type RetentionDeps, type RetentionReport } from './retention.ts';
import type { DrainBudget, UploadQueue } from './upload-queue.ts';

/** An object with no row is removed once it is this old: older than any upload whose row is still being written. */
export const ORPHAN_GRACE_MS = 3600_000;

export interface MaintenanceDeps {
  db: Database;
  cache: LocalStore;
  /** The store (STORAGE_PATH): its scratch is swept, and the cache must never overlap it. */
  local: LocalStore;
  deletions: Deletions;
  /** Present with cloud storage on. */
  cloud?: { store: CloudStore; uploads: UploadQueue; drainBudget: DrainBudget };
  maxCacheAgeHours: number;
  /** The operator's retention policy (RETENTION_*), and the deletes it goes through; absent or with no rule: off. */
  retention?: Pick<RetentionDeps, 'policy' | 'generations' | 'limit'>;
  log: Logger;
  now?: () => number;
}

export interface MaintenanceReport {
  started_at: string;
  duration_ms: number;
  cache: { removed: number; kept: number };
  /** Scratch folders of crashed writes removed (cache and store). */
  scratch_removed: number;
  uploads: { retried: number; uploaded: number; still_failing: number; marked_lost: number; reconciled: number; adopted: number } | null;
  /** What waits in the upload outbox after this run. */
  outbox: Backlog | null;
  /** Deletes whose copies were not all removed at once, finished now (or still failing). */
  deletions: DeletionReport;
  /**
   * Bucket objects with no row (removed once older than ORPHAN_GRACE_MS: `removed_objects`), and rows recorded
   * uploaded whose object is missing (reported: a replay of the save restores it).
   */
  orphans: { objects_without_rows: string[]; removed_objects: number; rows_without_objects: string[] } | null;
  /** What the retention policy removed (or, dry run, would remove); null when no policy is set. */
  retention: RetentionReport | null;
}

/**
 * Housekeeping, run by pg_cron through the storage-maintenance function on Supabase and on a timer on Node:
 * removes cache entries older than MAX_CACHE_AGE_HOURS; stages local copies the outbox lacks, marks uploaded what
 * the bucket verifiably holds, and `lost` what has no copy anywhere; drains the outbox within a budget; reports
 * (never deletes) orphans between the bucket and the table; applies the retention policy when one is set. Returns a
 * summary and logs it.
 */
export async function runMaintenance(deps: MaintenanceDeps): Promise<MaintenanceReport> {
  const now = deps.now ?? Date.now;
  const started = now();
  // Scratch folders a crashed write left behind, in the cache and the store (only those over an hour old).
  const scratchRemoved = (await deps.cache.sweepScratch(3600_000, started)) + (await deps.local.sweepScratch(3600_000, started));
  const cache = await deps.cache.removeOlderThan(new Date(started - deps.maxCacheAgeHours * 3600_000), { apartFrom: deps.local.root, log: deps.log });
  let uploads: MaintenanceReport['uploads'] = null;
  let orphans: MaintenanceReport['orphans'] = null;
  let outbox: Backlog | null = null;

  if (deps.cloud) {
    const { store, uploads: queue } = deps.cloud;
    const triage = await queue.triage();
    const drained = await queue.drain(deps.cloud.drainBudget);
    uploads = {
      retried: drained.claimed,
      uploaded: drained.uploaded,
      still_failing: drained.failed,
      marked_lost: triage.markedLost,
      reconciled: triage.reconciled,
      adopted: triage.adopted,
    };
    outbox = drained.backlog;

    // Rows first: an upload finishing between the two reads then shows as neither kind of orphan.
    const rows = await deps.db.asService((tx) => repo.allKeys(tx));
    const objects = await store.listObjects();
    const inBucket = new Set(objects.map((o) => o.key));
    const inTable = new Set(rows.map((r) => r.storageKey));
    const unowned = objects.filter((o) => !inTable.has(o.key));
    // Old enough that no save or upload can still be on its way to writing the row: nothing owns it.
    const stale = unowned.filter((o) => o.updatedAt && now() - o.updatedAt.getTime() > ORPHAN_GRACE_MS).map((o) => o.key);
    if (stale.length) {
      await store.remove(stale);
      deps.log.warn('orphan objects removed from the bucket', { count: stale.length, keys: stale.slice(0, 20) });
    }
    orphans = {
      objects_without_rows: unowned.map((o) => o.key),
      removed_objects: stale.length,
      rows_without_objects: rows.filter((r) => r.uploaded && !inBucket.has(r.storageKey)).map((r) => r.id),
    };
  }

  // Before the deletions' drain: a copy a retention delete could not remove at once is retried by the same run.
  const retention =
    deps.retention && retentionEnabled(deps.retention.policy) ? await applyRetention({ db: deps.db, ...deps.retention, log: deps.log, now: started }) : null;
  const deletions = await deps.deletions.drain(1000);
  const report: MaintenanceReport = { started_at: new Date(started).toISOString(), duration_ms: Math.round(now() - started), cache, scratch_removed: scratchRemoved, uploads, outbox, deletions, orphans, retention };
  deps.log.info('maintenance finished', {
    cache_removed: cache.removed,
    uploads_retried: uploads?.retried ?? 0,
    uploads_lost: uploads?.marked_lost ?? 0,
    outbox_rows: outbox?.rows ?? 0,
    outbox_oldest_age_seconds: outbox?.oldest_age_seconds ?? null,
    orphan_objects: orphans?.objects_without_rows.length ?? 0,
    orphan_rows: orphans?.rows_without_objects.length ?? 0,
    orphan_objects_removed: orphans?.removed_objects ?? 0,
    deletions_pending: deletions.pending,
    retention_selected: retention?.selected ?? 0,
    retention_removed: retention?.removed ?? 0,
    retention_dry_run: retention?.dry_run ?? null,
    duration_ms: report.duration_ms,
  });
  return report;
}
