import { storageKey } from '../archive/generation-archive.ts';
import type { Manifest } from '../archive/manifest.ts';
import type { Tx } from './database.ts';

export type UploadStatus = 'local' | 'pending' | 'uploaded' | 'failed' | 'lost';

/** A row of public.generations, as the service uses it. */
export interface GenerationRecord {
  id: string;
  projectId: string;
  ownerId: string;
  version: number;
  fileCount: number;
  totalSizeBytes: number;
  archiveSizeBytes: number;
  archiveSha256: string;
  contentSha256: string;
  manifest: Manifest;
  storageKey: string;
  uploadStatus: UploadStatus;
  uploadAttempts: number;
  uploadError: string | null;
  uploadedAt: Date | null;
  /** Kept by retention whatever its age or rank: the owner's to set (`setPinned`). */
  pinned: boolean;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id::text, project_id::text, owner_id::text, version, file_count, total_size_bytes::float8 as total_size_bytes,
  archive_size_bytes::float8 as archive_size_bytes, archive_sha256, content_sha256, manifest, storage_key, upload_status,
  upload_attempts, upload_error, uploaded_at, pinned, created_at, updated_at`;

type Row = {
  id: string;
  project_id: string;
  owner_id: string;
  version: number;
  file_count: number;
  total_size_bytes: number;
  archive_size_bytes: number;
  archive_sha256: string;
  content_sha256: string;
  manifest: Manifest | string;
  storage_key: string;
  upload_status: UploadStatus;
  upload_attempts: number;
  upload_error: string | null;
  uploaded_at: Date | null;
  pinned: boolean;
  created_at: Date;
  updated_at: Date;
};

const toRecord = (r: Row): GenerationRecord => ({
  id: r.id,
  projectId: r.project_id,
  ownerId: r.owner_id,
  version: Number(r.version),
  fileCount: Number(r.file_count),
  totalSizeBytes: Number(r.total_size_bytes),
  archiveSizeBytes: Number(r.archive_size_bytes),
  archiveSha256: r.archive_sha256,
  contentSha256: r.content_sha256,
  manifest: typeof r.manifest === 'string' ? JSON.parse(r.manifest) : r.manifest,
  // Derived, never read back: the code must not trust a column to say which object is whose.
  storageKey: storageKey({ projectId: r.project_id, generationId: r.id, version: Number(r.version) }),
  uploadStatus: r.upload_status,
  uploadAttempts: Number(r.upload_attempts),
  uploadError: r.upload_error,
  uploadedAt: r.uploaded_at,
  pinned: r.pinned === true,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Serialises version allocation per project for the rest of the transaction. */
export async function lockProject(tx: Tx, projectId: string): Promise<void> {
  await tx.query(`select pg_advisory_xact_lock(hashtextextended($1::text, 0))`, [`project:${projectId}`]);
}

/** Creates the project for `ownerId` unless it exists; returns the owner visible to this role (none if hidden). */
export async function ensureProject(tx: Tx, projectId: string, ownerId: string): Promise<string | undefined> {
  await tx.query(`insert into public.projects (id, owner_id) values ($1::uuid, $2::uuid) on conflict (id) do nothing`, [projectId, ownerId]);
  const rows = await tx.query<{ owner_id: string }>(`select owner_id::text from public.projects where id = $1::uuid`, [projectId]);
  return rows[0]?.owner_id;
}

/** Removes a project that holds no generation (a save that created it was refused after all). Service role. */
export async function removeEmptyProject(tx: Tx, projectId: string): Promise<void> {
  await tx.query(`delete from public.projects p where id = $1::uuid and not exists (select 1 from public.generations g where g.project_id = p.id)`, [projectId]);
}

export async function projectVisible(tx: Tx, projectId: string): Promise<boolean> {
  return (await tx.query(`select 1 from public.projects where id = $1::uuid`, [projectId])).length > 0;
}

/** The project's owner as this role sees it (none if it does not exist or is hidden). */
export async function projectOwner(tx: Tx, projectId: string): Promise<string | undefined> {
  const rows = await tx.query<{ owner_id: string }>(`select owner_id::text from public.projects where id = $1::uuid`, [projectId]);
  return rows[0]?.owner_id;
}

/**
 * The highest version the project ever had, deleted ones included (0 for none): versions are never reused, so the
 * next is this + 1. A trigger on generations insert moves it; hold `lockProject` from reading it to the insert.
 */
export async function lastVersion(tx: Tx, projectId: string): Promise<number> {
  const rows = await tx.query<{ v: number }>(`select last_version as v from public.projects where id = $1::uuid`, [projectId]);
  return Number(rows[0]?.v ?? 0);
}

/** Reserves a version for a save about to pack: the counter only ever rises (service role: users cannot update projects). */
export async function reserveVersion(tx: Tx, projectId: string, version: number): Promise<void> {
  await tx.query(`update public.projects set last_version = greatest(last_version, $2::int) where id = $1::uuid`, [projectId, version]);
}

export async function versionTaken(tx: Tx, projectId: string, version: number): Promise<boolean> {
  return (await tx.query(`select 1 from public.generations where project_id = $1::uuid and version = $2::int`, [projectId, version])).length > 0;
}

/** Whether any generation holds this id, visible to the caller or not (run as the service role). */
export async function generationIdTaken(tx: Tx, id: string): Promise<boolean> {
  return (await tx.query(`select 1 from public.generations where id = $1::uuid`, [id])).length > 0;
}

export async function findGeneration(tx: Tx, id: string): Promise<GenerationRecord | undefined> {
  const rows = await tx.query<Row>(`select ${COLUMNS} from public.generations where id = $1::uuid`, [id]);
  return rows[0] && toRecord(rows[0]);
}

export type NewGeneration = Omit<GenerationRecord, 'uploadAttempts' | 'uploadError' | 'uploadedAt' | 'pinned' | 'createdAt' | 'updatedAt'> & { createdAt: Date };

/**
 * Inserts the row; the record answered is `g` with what the database filled in. The manifest is not read back:
 * parsing it again cost a save more than the rest of the insert's answer (it is the same value, and every
 * reader encodes it in one fixed order, encodeManifest).
 */
export async function insertGeneration(tx: Tx, g: NewGeneration): Promise<GenerationRecord> {
  const [row] = await tx.query<Pick<Row, 'upload_attempts' | 'upload_error' | 'uploaded_at' | 'pinned' | 'created_at' | 'updated_at'>>(
    `insert into public.generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
       archive_sha256, content_sha256, manifest, storage_key, upload_status, created_at, updated_at)
     values ($1::uuid, $2::uuid, $3::uuid, $4::int, $5::int, $6::bigint, $7::bigint, $8, $9, $10::jsonb, $11, $12, $13::timestamptz, now())
     returning upload_attempts, upload_error, uploaded_at, pinned, created_at, updated_at`,
    [
      g.id,
      g.projectId,
      g.ownerId,
      g.version,
      g.fileCount,
      g.totalSizeBytes,
      g.archiveSizeBytes,
      g.archiveSha256,
      g.contentSha256,
      JSON.stringify(g.manifest),
      g.storageKey,
      g.uploadStatus,
      g.createdAt.toISOString(),
    ],
  );
  return {
    ...g,
    storageKey: storageKey({ projectId: g.projectId, generationId: g.id, version: g.version }),
    uploadAttempts: Number(row!.upload_attempts),
    uploadError: row!.upload_error,
    uploadedAt: row!.uploaded_at,
    pinned: row!.pinned === true,
    createdAt: row!.created_at,
    updatedAt: row!.updated_at,
  };
}

/** A row without its manifest: what a listing shows (a manifest can be megabytes). */
export type GenerationSummary = Omit<GenerationRecord, 'manifest'>;
const SUMMARY_COLUMNS = COLUMNS.replace('manifest, ', '');

/** Newest version first; `beforeVersion` pages on. Manifests are not read: a listing never shows them. */
export async function listGenerations(tx: Tx, projectId: string, limit: number, beforeVersion?: number): Promise<GenerationSummary[]> {
  const rows = await tx.query<Row>(
    `select ${SUMMARY_COLUMNS} from public.generations
     where project_id = $1::uuid and ($2::int is null or version < $2::int)
     order by version desc limit $3::int`,
    [projectId, beforeVersion ?? null, limit],
  );
  return rows.map((r) => {
    const { manifest: _, ...summary } = toRecord({ ...r, manifest: {} as Manifest });
    return summary;
  });
}

/**
 * Deletes one row (RLS decides whose). `unlessKept`: only if it is neither pinned nor its project's newest, checked in
 * the deleting statement itself, so a pin committed meanwhile wins over retention.
 */
export async function deleteGeneration(tx: Tx, id: string, opts: { unlessKept?: boolean } = {}): Promise<GenerationRecord | undefined> {
  const rows = await tx.query<Row>(
    `delete from public.generations g where g.id = $1::uuid
       and (not $2::bool or (not g.pinned and exists (select 1 from public.generations n where n.project_id = g.project_id and n.version > g.version)))
     returning ${COLUMNS}`,
    [id, opts.unlessKept === true],
  );
  return rows[0] && toRecord(rows[0]);
}

/**
 * Sets `pinned` (users: on their own rows only, through RLS and a grant of that one column); the row when it changed,
 * undefined when it already had that value or is not visible.
 */
export async function setPinned(tx: Tx, id: string, pinned: boolean): Promise<GenerationRecord | undefined> {
  const rows = await tx.query<Row>(`update public.generations set pinned = $2::bool where id = $1::uuid and pinned <> $2::bool returning ${COLUMNS}`, [id, pinned]);
  return rows[0] && toRecord(rows[0]);
}

/** Records a verified upload of exactly these bytes; false when the row is gone (deleted while uploading) or holds others. */
export async function markUploaded(tx: Tx, id: string, archiveSha256: string): Promise<boolean> {
  const rows = await tx.query(
    `update public.generations set upload_status = 'uploaded', upload_attempts = upload_attempts + 1, upload_error = null, uploaded_at = now()
     where id = $1::uuid and archive_sha256 = $2 returning id`,
    [id, archiveSha256],
  );
  return rows.length > 0;
}

/** Records a failed attempt; the bytes wait in the outbox for the next one. */
export async function markUploadFailed(tx: Tx, id: string, error: string): Promise<void> {
  await tx.query(
    `update public.generations set upload_status = 'failed', upload_attempts = upload_attempts + 1, upload_error = left($2, 1000)
     where id = $1::uuid and upload_status <> 'uploaded'`,
    [id, error],
  );
}

/** A replay packed the same content to other bytes (the packer changed): the row records the archive it can vouch for. */
export async function replaceArchive(tx: Tx, id: string, archiveSha256: string, archiveSizeBytes: number): Promise<void> {
  await tx.query(
    `update public.generations set archive_sha256 = $2, archive_size_bytes = $3::bigint where id = $1::uuid and upload_status <> 'uploaded'`,
    [id, archiveSha256, archiveSizeBytes],
  );
}

/** Its bytes are staged again (adopted from a local copy, or restored by a replay): waiting for an upload. */
export async function markPending(tx: Tx, id: string): Promise<void> {
  await tx.query(`update public.generations set upload_status = 'pending', upload_error = null where id = $1::uuid and upload_status <> 'uploaded'`, [id]);
}

/**
 * Generations not in the bucket that have no outbox row — `lost` ones, or the others (saved while cloud was off,
 * staged nowhere) — in id order after `afterId`, for paging.
 */
export async function listUnstaged(tx: Tx, limit: number, opts: { lost: boolean; afterId?: string }): Promise<GenerationRecord[]> {
  const rows = await tx.query<Row>(
    `select ${COLUMNS} from public.generations g
     where (case when $2::bool then upload_status = 'lost' else upload_status in ('local', 'pending', 'failed') end)
       and ($3::uuid is null or id > $3::uuid)
       and not exists (select 1 from codebegen_private.upload_outbox o where o.generation_id = g.id)
     order by id limit $1::int`,
    [limit, opts.lost, opts.afterId ?? null],
  );
  return rows.map(toRecord);
}

/** Marks an upload that can never succeed (no cloud copy, no local copy): it stops being retried. */
export async function markLost(tx: Tx, id: string, why: string): Promise<void> {
  await tx.query(`update public.generations set upload_status = 'lost', upload_error = left($2, 1000) where id = $1::uuid and upload_status not in ('uploaded', 'lost')`, [id, why]);
}

/** Every generation's bucket key and whether the database says it is uploaded. */
export async function allKeys(tx: Tx): Promise<{ id: string; storageKey: string; uploaded: boolean }[]> {
  const rows = await tx.query<{ id: string; project_id: string; version: number; uploaded: boolean }>(
    `select id::text, project_id::text, version, upload_status = 'uploaded' as uploaded from public.generations`,
  );
  return rows.map((r) => ({ id: r.id, storageKey: storageKey({ projectId: r.project_id, generationId: r.id, version: Number(r.version) }), uploaded: r.uploaded }));
}
