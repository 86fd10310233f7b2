import type { Tx } from './database.ts';

// The retention policy's selection, codebegen_private.retention_candidates (migration 20261202000100): one query,
// the same one operators run to preview it (docs/STORAGE_SETUP.md §10). Service role only. Times come from the
// caller's clock, like the outbox's.

export type RetentionReason = 'keep_last' | 'max_age';

export interface RetentionCandidate {
  generationId: string;
  projectId: string;
  version: number;
  createdAt: Date;
  /** 1 = its project's newest (never a candidate). */
  rankInProject: number;
  reasons: RetentionReason[];
}

type Row = { generation_id: string; project_id: string; version: number; created_at: Date | string; rank_in_project: number | string; reasons: RetentionReason[] | string; total: number | string };

/** Postgres text[] as a driver may hand it back unparsed: `{keep_last,max_age}`. */
const textArray = (v: string[] | string): string[] => (Array.isArray(v) ? v : v.replace(/^\{|\}$/g, '').split(',').filter(Boolean));

/**
 * What the policy selects now, oldest first, at most `limit` of them, and how many it selects in all.
 * `keepLast`/`olderThan` undefined: that rule is off.
 */
export async function retentionCandidates(
  tx: Tx,
  policy: { keepLast?: number; olderThan?: Date },
  limit: number,
): Promise<{ candidates: RetentionCandidate[]; total: number }> {
  const rows = await tx.query<Row>(
    `select generation_id::text, project_id::text, version, created_at, rank_in_project, reasons, count(*) over () as total
     from codebegen_private.retention_candidates($1::int, $2::timestamptz)
     order by created_at, project_id, version
     limit $3::int`,
    [policy.keepLast ?? null, policy.olderThan?.toISOString() ?? null, limit],
  );
  return {
    candidates: rows.map((r) => ({
      generationId: r.generation_id,
      projectId: r.project_id,
      version: Number(r.version),
      createdAt: new Date(r.created_at),
      rankInProject: Number(r.rank_in_project),
      reasons: textArray(r.reasons) as RetentionReason[],
    })),
    total: Number(rows[0]?.total ?? 0),
  };
}
