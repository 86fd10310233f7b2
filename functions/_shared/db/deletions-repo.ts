import type { GenerationRef } from '../archive/generation-archive.ts';
import type { Tx } from './database.ts';

// Queries on codebegen_private.pending_deletions (the tombstones a generation's delete leaves; written by a
// trigger): service_role only. Times come from the caller's clock, like the outbox's.

export interface Tombstone {
  id: number;
  ref: GenerationRef;
  storageKey: string;
  attempts: number;
}

type Row = { id: number | string; generation_id: string; project_id: string; version: number; storage_key: string; attempts: number };
const COLUMNS = `id, generation_id::text, project_id::text, version, storage_key, attempts`;
const toTombstone = (r: Row): Tombstone => ({
  id: Number(r.id),
  ref: { projectId: r.project_id, generationId: r.generation_id, version: Number(r.version) },
  storageKey: r.storage_key,
  attempts: Number(r.attempts),
});

/** The tombstones of one generation id (the delete that just committed, and any earlier one not finished). */
export async function forGeneration(tx: Tx, generationId: string): Promise<Tombstone[]> {
  return (await tx.query<Row>(`select ${COLUMNS} from codebegen_private.pending_deletions where generation_id = $1::uuid order by id`, [generationId])).map(toTombstone);
}

/** Tombstones whose retry is due, oldest first. */
export async function listDue(tx: Tx, now: Date, limit: number): Promise<Tombstone[]> {
  return (
    await tx.query<Row>(`select ${COLUMNS} from codebegen_private.pending_deletions where next_attempt_at <= $1::timestamptz order by next_attempt_at, id limit $2::int`, [
      now.toISOString(),
      limit,
    ])
  ).map(toTombstone);
}

/** Every copy is gone. */
export async function done(tx: Tx, id: number): Promise<void> {
  await tx.query(`delete from codebegen_private.pending_deletions where id = $1::bigint`, [id]);
}

export async function failed(tx: Tx, id: number, error: string, next: Date): Promise<void> {
  await tx.query(
    `update codebegen_private.pending_deletions set attempts = attempts + 1, last_error = left($2, 1000), next_attempt_at = $3::timestamptz where id = $1::bigint`,
    [id, error, next.toISOString()],
  );
}

export async function count(tx: Tx): Promise<number> {
  return Number((await tx.query<{ n: number }>(`select count(*)::int as n from codebegen_private.pending_deletions`))[0]!.n);
}
