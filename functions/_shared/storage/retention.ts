import type { Principal } from '../auth/principal.ts';
import type { Database } from '../db/database.ts';
import { retentionCandidates, type RetentionReason } from '../db/retention-repo.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { GenerationService } from './generation-service.ts';

/** At most this many generations are removed (or listed, dry run) per maintenance run: one Edge Function call's worth. */
export const RETENTION_BATCH = 200;

const DAY_MS = 86_400_000;
const SERVICE: Principal = { kind: 'service', claims: { role: 'service_role' } };

/** The operator's policy (RETENTION_KEEP_LAST, RETENTION_MAX_AGE_DAYS, RETENTION_DRY_RUN); a rule is off when undefined. */
export interface RetentionPolicy {
  keepLast?: number;
  maxAgeDays?: number;
  dryRun: boolean;
}

/** Whether the policy can remove anything at all. */
export const retentionEnabled = (p: RetentionPolicy): boolean => p.keepLast !== undefined || p.maxAgeDays !== undefined;

export interface RetentionDeps {
  db: Database;
  /** Removes a generation exactly as the API's DELETE does (row and tombstone together, then every copy). */
  generations: Pick<GenerationService, 'delete'>;
  policy: RetentionPolicy;
  log: Logger;
  /** The run's clock (ms): max age is counted from it. */
  now: number;
  limit?: number;
}

export interface RetentionReport {
  dry_run: boolean;
  keep_last: number | null;
  max_age_days: number | null;
  /** Generations created before this are over the age limit (null: no age limit). */
  older_than: string | null;
  /** How many generations the policy selects now, this run's batch included. */
  selected: number;
  removed: number;
  /** Pinned, become their project's newest, or deleted by someone else since they were selected: left alone. */
  skipped: number;
  /** Deletes that failed (a database error): selected again next run. */
  failed: number;
  /** More are selected than this run took (RETENTION_BATCH): the next run goes on. */
  more: boolean;
  /** This run's batch, oldest first: what it removed, or (dry run) would remove. */
  generations: { generation_id: string; project_id: string; version: number; created_at: string; reasons: RetentionReason[]; outcome: 'removed' | 'would_remove' | 'skipped' | 'failed' }[];
}

/**
 * Applies the retention policy once: selects with codebegen_private.retention_candidates (never a pinned generation,
 * never a project's newest) and deletes each through GenerationService.delete as the service, `unlessKept` so a pin
 * landing in between wins. Dry run: selects and reports, changes nothing.
 */
export async function applyRetention(deps: RetentionDeps): Promise<RetentionReport> {
  const { policy, log } = deps;
  const olderThan = policy.maxAgeDays === undefined ? undefined : new Date(deps.now - policy.maxAgeDays * DAY_MS);
  const { candidates, total } = await deps.db.asService((tx) => retentionCandidates(tx, { keepLast: policy.keepLast, olderThan }, deps.limit ?? RETENTION_BATCH));
  const report: RetentionReport = {
    dry_run: policy.dryRun,
    keep_last: policy.keepLast ?? null,
    max_age_days: policy.maxAgeDays ?? null,
    older_than: olderThan?.toISOString() ?? null,
    selected: total,
    removed: 0,
    skipped: 0,
    failed: 0,
    more: total > candidates.length,
    generations: [],
  };
  for (const c of candidates) {
    const entry = { generation_id: c.generationId, project_id: c.projectId, version: c.version, created_at: c.createdAt.toISOString(), reasons: c.reasons };
    if (policy.dryRun) {
      report.generations.push({ ...entry, outcome: 'would_remove' });
      continue;
    }
    try {
      await deps.generations.delete(SERVICE, c.generationId, { unlessKept: true });
      report.removed++;
      report.generations.push({ ...entry, outcome: 'removed' });
      log.info('retention removed a generation', { generation_id: c.generationId, project_id: c.projectId, version: c.version, reasons: c.reasons });
    } catch (err) {
      if (err instanceof AppError && err.code === ErrorCode.GenerationNotFound) {
        report.skipped++;
        report.generations.push({ ...entry, outcome: 'skipped' });
        continue;
      }
      report.failed++;
      report.generations.push({ ...entry, outcome: 'failed' });
      log.warn('retention could not remove a generation; selected again next run', { generation_id: c.generationId, project_id: c.projectId, error: err });
    }
  }
  return report;
}
