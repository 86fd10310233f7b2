import type { Tx } from './database.ts';

// Queries on codebegen_private.upload_outbox: service_role only (every caller runs as it). Times come from the
// caller's clock, so leases and backoff can be tested without waiting; hosts are expected to keep NTP time.

/** A drainer's claim on one outbox row. */
export interface Claim {
  generationId: string;
  archiveSha256: string;
  archiveSizeBytes: number;
  /** Counting this one. */
  attempts: number;
}

export interface Backlog {
  rows: number;
  bytes: number;
  /** Rows a drain would take now (not leased, backoff over). */
  due: number;
  oldest_age_seconds: number | null;
}

const CLAIMED = `generation_id::text, archive_sha256, octet_length(archive)::float8 as size, attempts`;
type ClaimRow = { generation_id: string; archive_sha256: string; size: number; attempts: number };
const toClaim = (r: ClaimRow): Claim => ({ generationId: r.generation_id, archiveSha256: r.archive_sha256, archiveSizeBytes: Number(r.size), attempts: Number(r.attempts) });

/**
 * Stores a generation's archive until the bucket verifiably holds it; a row already there is kept as it is.
 * With `claim`, the row starts claimed by that drainer (its first attempt), so the saving host's own upload needs
 * no claim of its own; should that host die, the lease runs out like any other.
 */
export async function stage(tx: Tx, generationId: string, sha256: string, bytes: Uint8Array, now: Date, claim?: { owner: string; leaseMs: number }): Promise<void> {
  await tx.query(
    `insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256, next_attempt_at, created_at, lease_owner, lease_expires_at, attempts)
     values ($1::uuid, $2::bytea, $3, $4::timestamptz, $4::timestamptz, $5, $4::timestamptz + make_interval(secs => $6::float8 / 1000), $7::int)
     on conflict (generation_id) do nothing`,
    [generationId, bytes, sha256, now.toISOString(), claim?.owner ?? null, claim ? claim.leaseMs : null, claim ? 1 : 0],
  );
}

export async function isStaged(tx: Tx, generationId: string): Promise<boolean> {
  return (await tx.query(`select 1 from codebegen_private.upload_outbox where generation_id = $1::uuid`, [generationId])).length > 0;
}

/** The staged bytes and the digest recorded with them. */
export async function stagedBytes(tx: Tx, generationId: string): Promise<{ sha256: string; bytes: Uint8Array } | undefined> {
  const rows = await tx.query<{ archive: Uint8Array; archive_sha256: string }>(
    `select archive, archive_sha256 from codebegen_private.upload_outbox where generation_id = $1::uuid`,
    [generationId],
  );
  return rows[0] && { sha256: rows[0].archive_sha256, bytes: new Uint8Array(rows[0].archive) };
}

const free = `(lease_expires_at is null or lease_expires_at < $2::timestamptz)`;

/** Claims one row unless another drainer's lease on it is still running (a lease of this drainer's own is renewed). */
export async function claimOne(tx: Tx, generationId: string, owner: string, now: Date, leaseMs: number): Promise<Claim | undefined> {
  const rows = await tx.query<ClaimRow>(
    `update codebegen_private.upload_outbox
     set lease_owner = $3, lease_expires_at = $2::timestamptz + make_interval(secs => $4::float8 / 1000), attempts = attempts + 1
     where generation_id = $1::uuid and (${free} or lease_owner = $3)
     returning ${CLAIMED}`,
    [generationId, now.toISOString(), owner, leaseMs],
  );
  return rows[0] && toClaim(rows[0]);
}

/** Extends this drainer's claim while its upload runs; a claim another drainer took over is left alone. */
export async function renew(tx: Tx, generationId: string, owner: string, now: Date, leaseMs: number): Promise<void> {
  await tx.query(
    `update codebegen_private.upload_outbox set lease_expires_at = $3::timestamptz + make_interval(secs => $4::float8 / 1000)
     where generation_id = $1::uuid and lease_owner = $2`,
    [generationId, owner, now.toISOString(), leaseMs],
  );
}

/** Claims up to `limit` due rows, oldest due first; rows other drainers are claiming right now are skipped. */
export async function claimDue(tx: Tx, owner: string, now: Date, leaseMs: number, limit: number): Promise<Claim[]> {
  const rows = await tx.query<ClaimRow>(
    `update codebegen_private.upload_outbox
     set lease_owner = $3, lease_expires_at = $2::timestamptz + make_interval(secs => $4::float8 / 1000), attempts = attempts + 1
     where generation_id in (
       select generation_id from codebegen_private.upload_outbox
       where next_attempt_at <= $2::timestamptz and ${free}
       order by next_attempt_at, generation_id limit $1::int
       for update skip locked)
     returning ${CLAIMED}`,
    [limit, now.toISOString(), owner, leaseMs],
  );
  return rows.map(toClaim).sort((a, b) => (a.generationId < b.generationId ? -1 : 1));
}

/** Ids of the rows a drain would take now, oldest due first (not claimed: the caller's uploads claim them one by one). */
export async function listDue(tx: Tx, now: Date, limit: number): Promise<string[]> {
  const rows = await tx.query<{ id: string }>(
    `select generation_id::text as id from codebegen_private.upload_outbox
     where next_attempt_at <= $2::timestamptz and ${free} order by next_attempt_at limit $1::int`,
    [limit, now.toISOString()],
  );
  return rows.map((r) => r.id);
}

/** Gives a claim back after a failed attempt: tried again from `nextAttemptAt`. */
export async function release(tx: Tx, generationId: string, owner: string, error: string, nextAttemptAt: Date): Promise<void> {
  await tx.query(
    `update codebegen_private.upload_outbox set lease_owner = null, lease_expires_at = null, last_error = left($3, 1000), next_attempt_at = $4::timestamptz
     where generation_id = $1::uuid and lease_owner = $2`,
    [generationId, owner, error, nextAttemptAt.toISOString()],
  );
}

/** The bucket holds these bytes, verified: the row leaves (in the transaction that marks the generation uploaded). */
export async function remove(tx: Tx, generationId: string): Promise<void> {
  await tx.query(`delete from codebegen_private.upload_outbox where generation_id = $1::uuid`, [generationId]);
}

export async function backlog(tx: Tx, now: Date): Promise<Backlog> {
  const [r] = await tx.query<{ rows: number; bytes: number; due: number; oldest: number | null }>(
    `select count(*)::int as rows, coalesce(sum(octet_length(archive)), 0)::float8 as bytes,
       (count(*) filter (where next_attempt_at <= $1::timestamptz and ${free.replace('$2', '$1')}))::int as due,
       extract(epoch from $1::timestamptz - min(created_at))::float8 as oldest
     from codebegen_private.upload_outbox`,
    [now.toISOString()],
  );
  return { rows: Number(r!.rows), bytes: Number(r!.bytes), due: Number(r!.due), oldest_age_seconds: r!.oldest === null ? null : Math.max(0, Math.round(Number(r!.oldest))) };
}
