import type { Database } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalStore } from '../stores/local-store.ts';
import type { LocalGenerationStorage } from './generation-storage.ts';
import type { Backlog } from '../db/outbox-repo.ts';
import type { DrainBudget, UploadQueue } from './upload-queue.ts';

export interface MaintenanceDeps {
  db: Database;
  cache: LocalStore;
  local: LocalGenerationStorage;
  /** Present with cloud storage on. */
  cloud?: { store: CloudStore; uploads: UploadQueue; drainBudget: DrainBudget };
  maxCacheAgeHours: number;
  log: Logger;
  now?: () => number;
}

export interface MaintenanceReport {
  started_at: string;
  duration_ms: number;
  cache: { removed: number; kept: number };
  uploads: { retried: number; uploaded: number; still_failing: number; marked_lost: number; reconciled: number; adopted: number } | null;
  /** What waits in the upload outbox after this run. */
  outbox: Backlog | null;
  orphans: { objects_without_rows: string[]; rows_without_objects: string[] } | null;
}

/**
 * Housekeeping, run by pg_cron through the storage-maintenance function on Supabase and on a timer on Node:
 * removes cache entries older than MAX_CACHE_AGE_HOURS; stages local copies the outbox lacks, marks uploaded what
 * the bucket verifiably holds, and `lost` what has no copy anywhere; drains the outbox within a budget; reports
 * (never deletes) orphans between the bucket and the table. Returns a summary and logs it.
 */
export async function runMaintenance(deps: MaintenanceDeps): Promise<MaintenanceReport> {
  const now = deps.now ?? Date.now;
  const started = now();
  const cache = await deps.cache.removeOlderThan(new Date(started - deps.maxCacheAgeHours * 3600_000));
  let uploads: MaintenanceReport['uploads'] = null;
  let orphans: MaintenanceReport['orphans'] = null;
  let outbox: Backlog | null = null;

  if (deps.cloud) {
    const { store, uploads: queue } = deps.cloud;
    const triage = await queue.triage(10_000);
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
    const keys = await store.listKeys();
    const inBucket = new Set(keys);
    const inTable = new Set(rows.map((r) => r.storageKey));
    orphans = {
      objects_without_rows: keys.filter((k) => !inTable.has(k)),
      rows_without_objects: rows.filter((r) => r.uploaded && !inBucket.has(r.storageKey)).map((r) => r.id),
    };
  }

  const report: MaintenanceReport = { started_at: new Date(started).toISOString(), duration_ms: Math.round(now() - started), cache, uploads, outbox, orphans };
  deps.log.info('maintenance finished', {
    cache_removed: cache.removed,
    uploads_retried: uploads?.retried ?? 0,
    uploads_lost: uploads?.marked_lost ?? 0,
    outbox_rows: outbox?.rows ?? 0,
    outbox_oldest_age_seconds: outbox?.oldest_age_seconds ?? null,
    orphan_objects: orphans?.objects_without_rows.length ?? 0,
    orphan_rows: orphans?.rows_without_objects.length ?? 0,
    duration_ms: report.duration_ms,
  });
  return report;
}
