import { randomUUID } from 'node:crypto';
import { packGeneration, storageKey, type GenerationRef, type PackedArchive } from '../archive/generation-archive.ts';
import type { Deletions } from './deletions.ts';
import { recordedArchiveLimits, refOf, type GenerationStorage } from './generation-storage.ts';
import { buildManifest, canonicalJson, contentDigest, encodeManifest, fileDigests, type Manifest } from '../archive/manifest.ts';
import { readSourceFiles } from '../archive/source-files.ts';
import type { TreeFile } from '../archive/tar-gz.ts';
import type { Principal } from '../auth/principal.ts';
import { asServiceWithin, type Database, type Tx } from '../db/database.ts';
import * as repo from '../db/generations-repo.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import { AppError, badRequest, ErrorCode, forbidden, generationNotFound, projectNotFound, tooLarge } from '../errors.ts';
import { hasLoneSurrogate } from '../json-safety.ts';
import type { Logger } from '../log.ts';
import { maxManifestBytes, MAX_SAVED_PATH_LENGTH, type Limits } from '../limits.ts';
import { normaliseFileSet } from '../secure-path.ts';
import type { LocalStore } from '../stores/local-store.ts';


export interface SaveInput {
  projectId: string;
  generationId?: string;
  version?: number;
  /** Relative path -> UTF-8 content (from the API), or exact bytes (a restore copies them as they are). */
  files: Record<string, string | Uint8Array>;
  metadata?: Record<string, unknown>;
  /** Service role only: whom the generation belongs to. */
  ownerId?: string;
}

export interface SaveResult {
  record: GenerationRecord;
  /** false when the same generation was sent again (an idempotent replay). */
  created: boolean;
}

export interface GenerationServiceDeps {
  db: Database;
  /** Where saves are written, first and at once (CodebeGen's layout). */
  local: LocalStore;
  /** Where the bytes live afterwards: local only, or local + cloud. */
  storage: GenerationStorage;
  /** Removes a deleted generation's copies once its delete has committed. */
  deletions: Deletions;
  limits: Limits;
  log: Logger;
  now?: () => Date;
}

/**
 * Saves, lists, reads and deletes generations for a Principal. Ownership is never checked here: every query runs
 * as the caller (`db.asUser`), so row-level security decides, and the service role is the one named exception.
 * What happens to the bytes after a save (uploads, cache, cloud reads) is the GenerationStorage's business.
 */
export class GenerationService {
  private readonly now: () => Date;
  constructor(private readonly deps: GenerationServiceDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Runs `fn` in a transaction as the principal: RLS for users, the service role for the backend. */
  private as<T>(p: Principal, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return p.kind === 'service' ? this.deps.db.asService(fn) : this.deps.db.asUser(p.claims, fn);
  }

  /**
   * Saves in three steps, so that nothing slow holds the database (on the embedded one, its only connection):
   * 1. under the project's lock, briefly: is this a replay, a conflict, or new — and if new, its version, reserved;
   * 2. outside any transaction: the manifest and the archive (the CPU-heavy part), and a new generation's files
   *    written and synced in a scratch folder;
   * 3. under the lock again: the row, its archive in the outbox (cloud on), and the files renamed into place,
   *    committed together.
   * A save that fails between 1 and 3 leaves its version unused: versions are never reused, so that is only a gap.
   */
  async save(principal: Principal, input: SaveInput): Promise<SaveResult> {
    const { limits } = this.deps;
    const ownerId = resolveOwner(principal, input.ownerId);
    const files = this.toTreeFiles(input.files);
    const metadata = input.metadata ?? {};
    if (new TextEncoder().encode(canonicalJson(metadata)).byteLength > limits.maxMetadataBytes) {
      throw tooLarge(`metadata: over ${limits.maxMetadataBytes} bytes`);
    }
    // Every file hashed once, for the content digest and both manifests below.
    const digests = fileDigests(files);
    const request: SaveRequest = { projectId: input.projectId, generationId: input.generationId ?? randomUUID(), ownerId, version: input.version, contentSha256: contentDigest(digests, metadata) };
    // Checked before anything is written, on the manifest at its largest (the longest version number): the real
    // one, made once the version is known, is never larger.
    const createdAt = this.now();
    const manifestBytes = encodeManifest(buildManifest({ generationId: request.generationId, projectId: request.projectId, version: 2_147_483_647, createdAt, files: digests, metadata })).byteLength;
    if (manifestBytes > maxManifestBytes(limits)) {
      throw tooLarge(`files: their manifest.json would be ${manifestBytes} bytes, over ${maxManifestBytes(limits)} (many long paths): fewer files or shorter paths`);
    }
    let plan: Plan;
    try {
      plan = await this.plan(principal, request);
    } catch (err) {
      throw mapDbError(err);
    }
    if (plan.kind === 'durable') return this.announce({ record: plan.record, created: false }, false);
    const manifest =
      plan.kind === 'restore'
        ? plan.record.manifest
        : buildManifest({ generationId: request.generationId, projectId: request.projectId, version: plan.version, createdAt, files: digests, metadata });
    try {
      const archive = await packGeneration(manifest, files);
      if (limits.maxArchiveBytes !== undefined && archive.bytes.byteLength > limits.maxArchiveBytes) {
        throw tooLarge(`archive: ${archive.bytes.byteLength} bytes packed, over the ${limits.maxArchiveBytes} bytes Supabase Storage takes per object (STORAGE_UPLOAD_LIMIT_BYTES)`);
      }
      return await this.commit(principal, request, plan, manifest, files, archive);
    } catch (err) {
      // A project this save created in step 1 and that holds nothing goes again: a refused save leaves no row.
      if (plan.kind === 'new' && plan.createdProject) await this.deps.db.asService((tx) => repo.removeEmptyProject(tx, request.projectId)).catch(() => {});
      throw err;
    }
  }

  /** Step 1: what this save is. Reserves a new generation's version; packs nothing. */
  private plan(principal: Principal, r: SaveRequest): Promise<Plan> {
    return this.as(principal, async (tx): Promise<Plan> => {
      await repo.lockProject(tx, r.projectId);
      r.ownerId ??= await ownerOf(tx, r.projectId);
      const existing = await repo.findGeneration(tx, r.generationId);
      if (existing) {
        assertSameGeneration(existing, r);
        // A replay of a generation whose bytes are gone (lost, or removed after a commit whose outcome was
        // unknown): the caller sent them again, so they are restored instead of a loss being confirmed.
        return (await this.deps.storage.durable(tx, existing)) ? { kind: 'durable', record: existing } : { kind: 'restore', record: existing };
      }
      // An id another owner's generation holds (hidden by RLS): refused before anything is written. Ids are the
      // caller's to choose, so this 409 says only that the id is taken (docs/RELIABILITY.md, by design).
      if (await asServiceWithin(tx, () => repo.generationIdTaken(tx, r.generationId))) {
        throw new AppError(ErrorCode.GenerationConflict, 409, 'that generation id is already taken');
      }
      const existed = await repo.projectVisible(tx, r.projectId);
      const owner = await repo.ensureProject(tx, r.projectId, r.ownerId);
      if (owner === undefined) throw projectNotFound();
      if (owner !== r.ownerId) {
        // Only the service role can see another owner's project; a user sees nothing (above).
        throw new AppError(ErrorCode.GenerationConflict, 409, `project ${r.projectId} belongs to another owner`);
      }
      const last = await repo.lastVersion(tx, r.projectId);
      const version = r.version ?? last + 1;
      if (r.version !== undefined) {
        if (await repo.versionTaken(tx, r.projectId, version)) {
          throw new AppError(ErrorCode.VersionConflict, 409, `version ${version} of project ${r.projectId} already exists`);
        }
        if (version <= last) {
          throw new AppError(
            ErrorCode.VersionConflict,
            409,
            `version ${version} of project ${r.projectId} cannot be used: versions are never reused, even after a delete (the next is ${last + 1})`,
          );
        }
      }
      // Reserved now, used at commit; the counter is the service's to move (users cannot update projects).
      await asServiceWithin(tx, () => repo.reserveVersion(tx, r.projectId, version));
      return { kind: 'new', version, createdProject: !existed };
    });
  }

  /** Step 3: the row, its bytes and its files, in one transaction; a COMMIT whose outcome is hidden is found out. */
  private async commit(principal: Principal, r: SaveRequest, plan: Exclude<Plan, { kind: 'durable' }>, manifest: Manifest, files: TreeFile[], archive: PackedArchive): Promise<SaveResult> {
    // Set once local files are placed: from then on a failure may hide a commit that happened (see below).
    let written: GenerationRef | undefined;
    // Whether this transaction staged the archive (and with it the first claim on its upload).
    let staged = false;
    // A new generation's files are written and synced before the transaction: inside it, only renamed into place.
    const ref: GenerationRef = { projectId: r.projectId, generationId: r.generationId, version: plan.kind === 'new' ? plan.version : plan.record.version };
    const unplaced = plan.kind === 'new' ? await this.deps.local.stage(ref, manifest, files, archive.bytes) : undefined;
    try {
      const result = await this.as(principal, async (tx): Promise<SaveResult> => {
        await repo.lockProject(tx, r.projectId);
        const existing = await repo.findGeneration(tx, r.generationId);
        if (plan.kind === 'restore') {
          if (!existing || existing.archiveSha256 !== plan.record.archiveSha256) throw concurrentSave(r.generationId);
          if (await this.deps.storage.durable(tx, existing)) return { record: existing, created: false };
          const record = await this.restore(tx, existing, files, archive, (ref) => (written = ref));
          staged = true;
          return { record, created: false };
        }
        if (existing) {
          // Another save of this id committed between our steps 1 and 3.
          assertSameGeneration(existing, r);
          if (await this.deps.storage.durable(tx, existing)) return { record: existing, created: false };
          throw concurrentSave(r.generationId);
        }
        const record = await repo.insertGeneration(tx, {
          id: r.generationId,
          projectId: r.projectId,
          ownerId: r.ownerId!,
          version: plan.version,
          fileCount: manifest.file_count,
          totalSizeBytes: manifest.total_size_bytes,
          archiveSizeBytes: archive.bytes.byteLength,
          archiveSha256: archive.sha256,
          contentSha256: r.contentSha256,
          manifest,
          storageKey: storageKey(ref),
          uploadStatus: this.deps.storage.cloudEnabled ? 'pending' : 'local',
          createdAt: new Date(manifest.created_at),
        });
        // Cloud on, the archive's bytes commit with the row (the upload outbox): durable beyond this host.
        await this.deps.storage.stage(tx, record, archive.bytes);
        staged = true;
        // Files last, inside the transaction: if they cannot be placed, the row is rolled back too.
        await unplaced!.place();
        written = ref;
        this.deps.log.info('generation saved', {
          generation_id: r.generationId,
          project_id: r.projectId,
          version: plan.version,
          file_count: manifest.file_count,
          archive_bytes: archive.bytes.byteLength,
        });
        return { record, created: true };
      });
      return this.announce(result, staged);
    } catch (err) {
      if (written) {
        // The files are placed; the failure came at or after COMMIT, whose outcome a dropped connection hides.
        // Find out before touching anything: removing the files of a committed row would lose an acknowledged save.
        const outcome = await this.commitOutcome(written, r.contentSha256);
        if (outcome === 'absent') await this.deps.local.remove(written).catch(() => {});
        else if (outcome === 'unknown') {
          this.deps.log.error('save outcome unknown; files kept', { generation_id: written.generationId, error: err });
          throw new AppError(ErrorCode.StorageUnavailable, 503, 'the database did not confirm the save: send it again', { cause: err });
        } else {
          this.deps.log.warn('commit reported failed but the row is there: saved', { generation_id: written.generationId, error: err });
          return this.announce({ record: outcome, created: true }, staged);
        }
      }
      throw mapDbError(err);
    } finally {
      await unplaced?.discard();
    }
  }

  /** Committed: now, and only now, the background work may start. */
  private announce(result: SaveResult, staged: boolean): SaveResult {
    if (result.record.uploadStatus !== 'uploaded') this.deps.storage.saved(result.record, staged);
    return result;
  }

  /**
   * Puts a replayed generation's bytes back: the archive packed again (outside the transaction) from what the
   * caller re-sent with the recorded manifest, written locally unless a copy is here, and staged (cloud on), the
   * row `pending` again. Same content, proven by content_sha256; should the packer have changed since, the row
   * records the new archive's digest.
   */
  private async restore(tx: Tx, existing: GenerationRecord, files: TreeFile[], archive: PackedArchive, placed: (ref: GenerationRef) => void): Promise<GenerationRecord> {
    const ref = refOf(existing);
    const record = await asServiceWithin(tx, async () => {
      if (archive.sha256 !== existing.archiveSha256) await repo.replaceArchive(tx, existing.id, archive.sha256, archive.bytes.byteLength);
      if (this.deps.storage.cloudEnabled) await repo.markPending(tx, existing.id);
      return (await repo.findGeneration(tx, existing.id))!;
    });
    await this.deps.storage.stage(tx, record, archive.bytes);
    if (!(await this.deps.storage.hasLocalCopy(record))) {
      await this.deps.local.write(ref, record.manifest, files, archive.bytes);
      placed(ref);
    }
    this.deps.log.warn('replay restored a generation whose bytes were gone', { generation_id: record.id, project_id: record.projectId, was: existing.uploadStatus });
    return record;
  }

  /** After a failed commit: is our row there ('absent': no; 'unknown': cannot tell), the one at our files' path? */
  private async commitOutcome(ref: GenerationRef, contentSha256: string): Promise<GenerationRecord | 'absent' | 'unknown'> {
    let row: GenerationRecord | undefined;
    try {
      row = await this.deps.db.asService((tx) => repo.findGeneration(tx, ref.generationId));
    } catch {
      return 'unknown';
    }
    if (!row || row.projectId !== ref.projectId || row.version !== ref.version) return 'absent';
    return row.contentSha256 === contentSha256 ? row : 'unknown';
  }

  async list(principal: Principal, projectId: string, limit: number, beforeVersion?: number) {
    return this.as(principal, async (tx) => {
      if (!(await repo.projectVisible(tx, projectId))) throw projectNotFound();
      const rows = await repo.listGenerations(tx, projectId, limit + 1, beforeVersion);
      return { items: rows.slice(0, limit), more: rows.length > limit };
    });
  }

  async get(principal: Principal, generationId: string): Promise<GenerationRecord> {
    const record = await this.as(principal, (tx) => repo.findGeneration(tx, generationId));
    if (!record) throw generationNotFound();
    return record;
  }

  /**
   * The archive's exact bytes (the ones `archive_sha256` names) for a generation the principal may read; with
   * `archiveSha256` (a download link's), only if the generation still holds those bytes — else it is not the one
   * the link was made for (deleted, and saved again under its id), and that one is gone: 404.
   */
  async archive(principal: Principal, generationId: string, archiveSha256?: string): Promise<{ record: GenerationRecord; bytes: Uint8Array }> {
    const record = await this.get(principal, generationId);
    if (archiveSha256 !== undefined && archiveSha256 !== record.archiveSha256) throw generationNotFound();
    try {
      return { record, bytes: await this.deps.storage.archive(record) };
    } catch (err) {
      // Deleted while it was being read: that is a 404, not a storage failure.
      if ((await this.as(principal, (tx) => repo.findGeneration(tx, generationId)).catch(() => record)) === undefined) throw generationNotFound();
      throw err;
    }
  }

  /** A direct cloud download URL for a record already read as its principal, when there is one. */
  cloudUrl(record: GenerationRecord, expiresInSeconds: number): Promise<string | undefined> {
    return this.deps.storage.cloudUrl(record, expiresInSeconds);
  }

  /**
   * Deletes as the principal (RLS decides): the row and, by trigger, a tombstone commit together, so the generation
   * is gone for its owner at once; then its copies are removed, and what cannot be removed now is retried later
   * (the drain, maintenance). A delete cannot half-happen.
   */
  async delete(principal: Principal, generationId: string, opts: { unlessKept?: boolean } = {}): Promise<void> {
    const record = await this.as(principal, async (tx) => {
      // `unlessKept` (retention): a generation pinned, or become its project's newest, since it was chosen stays.
      const deleted = await repo.deleteGeneration(tx, generationId, opts);
      if (!deleted) throw generationNotFound();
      return deleted;
    });
    this.deps.log.info('generation deleted', { generation_id: record.id, project_id: record.projectId, version: record.version });
    await this.deps.deletions.afterDelete(record.id);
  }

  /**
   * Pins or unpins as the principal: RLS decides whose row (users may write `pinned` and no other column). Answers
   * the row; setting the value it already has changes nothing. Not found or not theirs: the same 404 as `get`.
   */
  async setPinned(principal: Principal, generationId: string, pinned: boolean): Promise<GenerationRecord> {
    const { record, changed } = await this.as(principal, async (tx) => {
      const updated = await repo.setPinned(tx, generationId, pinned);
      return { record: updated ?? (await repo.findGeneration(tx, generationId)), changed: updated !== undefined };
    });
    if (!record) throw generationNotFound();
    if (changed) this.deps.log.info(pinned ? 'generation pinned' : 'generation unpinned', { generation_id: record.id, project_id: record.projectId, version: record.version });
    return record;
  }

  /**
   * Restores (forks) a generation as its project's next version: the same files and metadata, plus
   * `restored_from: { generation_id, version }`, saved through `save` — so limits, ownership, uploads and the
   * idempotency of `generationId` are exactly a save's. The source is read as the principal (RLS: another user's is
   * a 404) and never changed.
   * Not a copy of the bucket's object: the archive's root folder is `v{version}__{generation_id}/` and its
   * manifest.json names both, so the new generation's archive has other bytes; it is packed again from the
   * source's files, verified by the source's archive sha256 on the way.
   */
  async restoreVersion(principal: Principal, sourceId: string, opts: { generationId?: string } = {}): Promise<SaveResult & { source: GenerationRecord }> {
    const { record: source, bytes } = await this.archive(principal, sourceId);
    // Read within what the source's own row records; the save below then holds the copy to today's limits.
    const files = await readSourceFiles([bytes], refOf(source), recordedArchiveLimits(source));
    const result = await this.save(principal, {
      projectId: source.projectId,
      generationId: opts.generationId,
      // fromEntries, not assignment: a "__proto__" path stays a file.
      files: Object.fromEntries(files.map((f) => [f.path, f.data])),
      metadata: { ...source.manifest.metadata, restored_from: { generation_id: source.id, version: source.version } },
      ownerId: principal.kind === 'service' ? source.ownerId : undefined,
    });
    if (result.created) this.deps.log.info('generation restored', { generation_id: result.record.id, project_id: source.projectId, version: result.record.version, restored_from: source.id });
    return { ...result, source };
  }

  private toTreeFiles(input: Record<string, string | Uint8Array>): TreeFile[] {
    const { maxFiles, maxFileBytes, maxGenerationBytes } = this.deps.limits;
    const paths = Object.keys(input);
    if (paths.length === 0) throw badRequest('files: must contain at least one file');
    if (paths.length > maxFiles) throw tooLarge(`files: ${paths.length} files, the limit is ${maxFiles}`);
    const normalised = normaliseFileSet(paths, 'files', { maxLength: MAX_SAVED_PATH_LENGTH, maxDepth: this.deps.limits.maxPathDepth, maxFolders: this.deps.limits.maxFolders });
    const enc = new TextEncoder();
    let total = 0;
    return paths.map((p, i) => {
      // UTF-8 cannot carry an unpaired surrogate: it would be stored as U+FFFD, not as sent.
      const content = input[p]!;
      if (typeof content === 'string' && hasLoneSurrogate(content)) throw badRequest(`files[${JSON.stringify(p)}]: content is not valid Unicode (unpaired surrogate)`);
      const data = typeof content === 'string' ? enc.encode(content) : content;
      if (data.byteLength > maxFileBytes) throw tooLarge(`files[${JSON.stringify(p)}]: ${data.byteLength} bytes, the limit is ${maxFileBytes}`);
      total += data.byteLength;
      if (total > maxGenerationBytes) throw tooLarge(`files: over ${maxGenerationBytes} bytes in all`);
      return { path: normalised[i]!, data };
    });
  }
}

/** What a save asks for, as steps 1 and 3 both check it. */
interface SaveRequest {
  projectId: string;
  generationId: string;
  /** Unset only for a service-role save without owner_id, until step 1 sets it to the existing project's owner. */
  ownerId?: string;
  version?: number;
  contentSha256: string;
}

type Plan = { kind: 'new'; version: number; createdProject: boolean } | { kind: 'restore'; record: GenerationRecord } | { kind: 'durable'; record: GenerationRecord };

/** The same generation sent again (same project, owner, content, and version if given), or a 409. */
function assertSameGeneration(existing: GenerationRecord, r: SaveRequest): void {
  const same =
    existing.projectId === r.projectId &&
    existing.contentSha256 === r.contentSha256 &&
    existing.ownerId === r.ownerId &&
    (r.version === undefined || r.version === existing.version);
  if (!same) throw new AppError(ErrorCode.GenerationConflict, 409, `generation ${r.generationId} already exists with other content`);
}

/** A service-role save without owner_id goes into an existing project as its owner's; a first generation needs one. */
async function ownerOf(tx: Tx, projectId: string): Promise<string> {
  const owner = await repo.projectOwner(tx, projectId);
  if (owner === undefined) throw badRequest(`owner_id: required with the service role for a project's first generation (project ${projectId} does not exist yet)`);
  return owner;
}

const concurrentSave = (id: string) =>
  new AppError(ErrorCode.StorageUnavailable, 503, `another save of generation ${id} was under way at the same time: send it again`);

/** The owner a save names; for the service role without owner_id, none yet: step 1 takes the project's (`ownerOf`). */
function resolveOwner(principal: Principal, ownerId: string | undefined): string | undefined {
  if (principal.kind === 'service') return ownerId;
  if (ownerId !== undefined && ownerId !== principal.userId) throw forbidden('owner_id: only the service role may save for another user');
  return principal.userId;
}

/** Postgres errors that are the caller's doing become 4xx; the rest stay 5xx. */
function mapDbError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; constraint?: string; constraint_name?: string; message?: string };
  const constraint = e.constraint ?? e.constraint_name ?? e.message ?? '';
  if (e.code === '23505' && constraint.includes('generations_project_version_key')) {
    return new AppError(ErrorCode.VersionConflict, 409, 'that version of the project already exists', { cause: err });
  }
  if (e.code === '23505' && constraint.includes('generations_pkey')) {
    return new AppError(ErrorCode.GenerationConflict, 409, 'that generation id is already taken', { cause: err });
  }
  if (e.code === '42501') return projectNotFound();
  if (e.code === '22P05' || e.code === '22P02' || e.code === '22003') return badRequest('a value cannot be stored (invalid text or out of range)');
  if (e.code === '23503') return new AppError(ErrorCode.GenerationConflict, 409, 'project belongs to another owner', { cause: err });
  return err;
}
