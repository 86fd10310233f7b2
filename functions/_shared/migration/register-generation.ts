import { manifestTime, storageKey } from '../archive/generation-archive.ts';
import type { Database, Tx } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { PreparedGeneration } from './prepare-generation.ts';

/** A generation that cannot be registered as it is (another owner, version taken, other content under its id). */
export class RegistrationConflict extends Error {
  override name = 'RegistrationConflict';
}

/** Its project and version are already another generation's row: which one is that version is for a person to say. */
export class VersionClash extends RegistrationConflict {
  override name = 'VersionClash';
}

/** What the database says about a prepared generation, read only (what a dry run may do). */
export type RowState = 'absent' | 'not_uploaded' | 'uploaded';

/**
 * Throws RegistrationConflict when the row under this id is another generation, VersionClash when another row
 * holds its project and version; else its state. The same checks as registerGeneration, writing nothing.
 */
export async function rowState(db: Database, g: PreparedGeneration, ownerId: string): Promise<RowState> {
  return db.asService(async (tx) => stateOf((await inspect(tx, g, ownerId)).existing));
}

const stateOf = (existing: repo.GenerationRecord | undefined): RowState =>
  !existing ? 'absent' : existing.uploadStatus === 'uploaded' ? 'uploaded' : 'not_uploaded';

/**
 * Registers the generation's row as the API would have written it (project created for its owner, status
 * `pending` until the upload is verified), unless that very generation is already there. Returns the row's state
 * before this call.
 */
export async function registerGeneration(db: Database, g: PreparedGeneration, ownerId: string): Promise<RowState> {
  return db.asService(async (tx) => {
    await repo.lockProject(tx, g.ref.projectId);
    const { existing, projectExists } = await inspect(tx, g, ownerId);
    if (existing) return stateOf(existing);
    if (!projectExists) {
      const owner = await repo.ensureProject(tx, g.ref.projectId, ownerId);
      if (owner !== ownerId) throw new RegistrationConflict(`project ${g.ref.projectId} belongs to another owner (${owner})`);
    }
    await repo.insertGeneration(tx, {
      id: g.ref.generationId,
      projectId: g.ref.projectId,
      ownerId,
      version: g.ref.version,
      fileCount: g.manifest.file_count,
      totalSizeBytes: g.manifest.total_size_bytes,
      archiveSizeBytes: g.archive.bytes.byteLength,
      archiveSha256: g.archive.sha256,
      contentSha256: g.contentSha256,
      manifest: g.manifest,
      storageKey: storageKey(g.ref),
      uploadStatus: 'pending',
      createdAt: manifestTime(g.manifest),
    });
    return 'absent';
  });
}

/**
 * The generation's own row, if it is registered (RegistrationConflict unless it is this very generation); else
 * whether its project exists, after checking it can be placed: RegistrationConflict when the project has another
 * owner, VersionClash when its version is another generation's. One statement in the usual case (not registered):
 * a migration registers thousands of rows.
 */
async function inspect(tx: Tx, g: PreparedGeneration, ownerId: string): Promise<{ existing?: repo.GenerationRecord; projectExists: boolean }> {
  const [row] = await tx.query<{ owner: string | null; holder: string | null; registered: boolean }>(
    `select (select owner_id::text from public.projects where id = $1::uuid) as owner,
            (select id::text from public.generations where project_id = $1::uuid and version = $2::int) as holder,
            exists (select 1 from public.generations where id = $3::uuid) as registered`,
    [g.ref.projectId, g.ref.version, g.ref.generationId],
  );
  const { owner, holder, registered } = row!;
  if (registered) {
    const existing = (await repo.findGeneration(tx, g.ref.generationId))!;
    assertSame(existing, g, ownerId);
    return { existing, projectExists: true };
  }
  if (owner !== null && owner !== ownerId) throw new RegistrationConflict(`project ${g.ref.projectId} belongs to another owner (${owner}), not ${ownerId}`);
  if (holder !== null) throw new VersionClash(`version ${g.ref.version} of project ${g.ref.projectId} is already another generation in the database (${holder})`);
  return { projectExists: owner !== null };
}

function assertSame(existing: repo.GenerationRecord, g: PreparedGeneration, ownerId: string) {
  const diffs: string[] = [];
  if (existing.projectId !== g.ref.projectId) diffs.push(`project ${existing.projectId}`);
  if (existing.version !== g.ref.version) diffs.push(`version ${existing.version}`);
  if (existing.ownerId !== ownerId) diffs.push(`owner ${existing.ownerId}`);
  if (existing.contentSha256 !== g.contentSha256) diffs.push('other files or metadata');
  else if (existing.archiveSha256 !== g.archive.sha256) diffs.push('another archive (sha256)');
  if (diffs.length) throw new RegistrationConflict(`generation ${g.ref.generationId} is already registered with ${diffs.join(', ')}`);
}
