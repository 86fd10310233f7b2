import type { GenerationRef } from '../archive/generation-archive.ts';
import { mkdir, rename } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { generationDirName, packGeneration } from '../archive/generation-archive.ts';
import { encodeManifest, sha256Hex, type FileDigest } from '../archive/manifest.ts';
import { readSourceFiles } from '../archive/source-files.ts';
import type { UnpackLimits } from '../archive/tar-gz.ts';
import type { Tx } from '../db/database.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import { AppError, ErrorCode, internal } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { LocalStore } from '../stores/local-store.ts';

/**
 * Where a generation's bytes live once its row is committed. One implementation per mode, composed rather than
 * branched: `LocalGenerationStorage` (cloud off, CodebeGen's old behaviour) and `HybridGenerationStorage`
 * (local first, background upload, cache-first reads), which wraps the local one.
 */
export interface GenerationStorage {
  readonly cloudEnabled: boolean;
  /**
   * Inside the save's transaction, before it commits: makes the archive durable beyond this host (cloud on: the
   * upload outbox in Postgres). Cloud off: nothing, the local disk is the store.
   */
  stage(tx: Tx, record: GenerationRecord, archive: Uint8Array): Promise<void>;
  /** Whether the generation's bytes are held beyond this host already (in the bucket or the outbox). */
  durable(tx: Tx, record: GenerationRecord): Promise<boolean>;
  /** Whether this host holds the generation (archive or folder). */
  hasLocalCopy(record: GenerationRecord): Promise<boolean>;
  /**
   * The row is committed: start whatever happens in the background (uploads). `staged`: this save's transaction
   * staged the archive (a new save, or a replay that restored it), so this host holds its first claim.
   */
  saved(record: GenerationRecord, staged: boolean): void;
  /** The archive's exact bytes, the ones `archive_sha256` names. */
  archive(record: GenerationRecord): Promise<Uint8Array>;
  /**
   * One source file's exact bytes (those `expected` records) from the nearest copy that holds them: the local
   * folder; else (cloud on) a fresh cache entry; else the archive — fetched once for all concurrent readers, and
   * cached — read for that file. Undefined when the generation has no such file.
   */
  sourceFile(record: GenerationRecord, expected: FileDigest): Promise<Uint8Array | undefined>;
  /** A direct download URL from the cloud, or undefined when the caller should use our own signed URL. */
  cloudUrl(record: GenerationRecord, expiresInSeconds: number): Promise<string | undefined>;
  /**
   * Removes every copy of a deleted generation this host can reach (bucket object, local copy, cache entry), after
   * its row's delete committed. Throws when one cannot be removed; its tombstone then stays for a retry.
   */
  removeCopies(ref: GenerationRef, storageKey: string): Promise<void>;
}

/** Where archives that failed their check are kept (inside STORAGE_PATH, never a project id: not a UUID). */
export const QUARANTINE = '.codebegen-quarantine';

export const refOf = (r: GenerationRecord): GenerationRef => ({ projectId: r.projectId, generationId: r.id, version: r.version });

/**
 * Unpack limits for an archive already proven to be the recorded one (by sha256): what its own row says it holds,
 * with room to spare, so a generation saved under larger limits than today's still reads.
 */
export function recordedArchiveLimits(r: GenerationRecord): UnpackLimits {
  // The archive's manifest.json may carry what the row's does not (file_details the Python service never wrote).
  const manifest = encodeManifest(r.manifest).byteLength + r.fileCount * 2048 + 65_536;
  const folders = new Set(r.manifest.files.flatMap((p) => p.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/')))).size;
  return { maxEntries: 2 * (r.fileCount + folders) + 16, maxFileBytes: r.totalSizeBytes + manifest, maxTotalBytes: r.totalSizeBytes + manifest };
}

/** One source file of the recorded archive `bytes`, checked against what the manifest records of it. */
export async function sourceFileOf(record: GenerationRecord, bytes: Uint8Array, expected: FileDigest): Promise<Uint8Array | undefined> {
  const [file] = await readSourceFiles([bytes], refOf(record), recordedArchiveLimits(record), new Set([expected.path]));
  if (!file) return undefined;
  if (file.data.byteLength !== expected.size || sha256Hex(file.data) !== expected.sha256) {
    throw internal(`file ${JSON.stringify(expected.path)} of generation ${record.id} does not match its manifest`);
  }
  return file.data;
}

/** Cloud off: the local disk is the only copy. */
export class LocalGenerationStorage implements GenerationStorage {
  readonly cloudEnabled = false;
  constructor(
    readonly local: LocalStore,
    private readonly log: Logger,
  ) {}

  async stage(): Promise<void> {}

  /** Cloud off, the local copy is the only one: durable when it is here. */
  async durable(_tx: Tx, record: GenerationRecord): Promise<boolean> {
    return this.hasLocalCopy(record);
  }

  saved(): void {}

  async archive(record: GenerationRecord): Promise<Uint8Array> {
    const bytes = await this.localArchive(record);
    if (!bytes) throw new AppError(ErrorCode.StorageUnavailable, 503, 'generation files are not available on this server');
    return bytes;
  }

  async sourceFile(record: GenerationRecord, expected: FileDigest): Promise<Uint8Array | undefined> {
    return (await this.folderFile(record, expected)) ?? sourceFileOf(record, await this.archive(record), expected);
  }

  /** The file from this host's folder of the generation, if it holds exactly the recorded bytes. */
  folderFile(record: GenerationRecord, expected: FileDigest): Promise<Uint8Array | undefined> {
    return this.local.readSourceFile(refOf(record), expected);
  }

  /**
   * The stored archive, if its sha256 is the recorded one; or, for a folder without one (CodebeGen's Python wrote
   * it) or whose archive fails the check, the folder packed again and proven identical. A folder that packs to
   * other bytes is an integrity failure (500) — or, with `mismatch: 'miss'`, no local copy at all, for a caller
   * that has another copy to turn to. Bytes that fail their check are never returned.
   */
  async localArchive(record: GenerationRecord, opts: { mismatch?: 'throw' | 'miss' } = {}): Promise<Uint8Array | undefined> {
    const ref = refOf(record);
    const stored = await this.local.readArchive(ref);
    if (stored && sha256Hex(stored) === record.archiveSha256) return stored;
    if (stored) await this.setAside(record, stored.byteLength);
    const onDisk = await this.local.read(ref, ['hierarchical']);
    if (!onDisk) return undefined;
    let packed = await packGeneration(record.manifest, onDisk.files);
    // Recorded by the packer before issue 15 (fflate, the same on every runtime)?
    if (packed.sha256 !== record.archiveSha256) packed = await packGeneration(record.manifest, onDisk.files, 'legacy');
    if (packed.sha256 !== record.archiveSha256) {
      // Removed while we read it (a delete): not a copy that failed its check, just no copy.
      if (!(await this.local.locate(ref, ['hierarchical']))) return undefined;
      this.log.error('archive does not match its record', { generation_id: record.id, expected: record.archiveSha256, actual: packed.sha256 });
      if (opts.mismatch === 'miss') return undefined;
      throw internal('stored generation failed its integrity check');
    }
    return packed.bytes;
  }

  /**
   * Moves a stored archive that fails its sha256 out of the way, into `{STORAGE_PATH}/.codebegen-quarantine/`, for an
   * operator to look at: never served, never uploaded, never deleted silently. The folder beside it, if it packs to
   * the recorded bytes, serves from then on.
   */
  private async setAside(record: GenerationRecord, bytes: number): Promise<void> {
    const ref = refOf(record);
    const dir = join(this.local.root, QUARANTINE);
    const to = join(dir, `${ref.projectId}__${generationDirName(ref)}.${Date.now()}.tar.gz`);
    try {
      await mkdir(dir, { recursive: true });
      await rename(this.local.archivePath(ref), to);
      this.log.error('stored archive does not match its record: set aside, not used', { generation_id: record.id, bytes, set_aside: relative(this.local.root, to) });
    } catch (err) {
      this.log.error('stored archive does not match its record; not used (and could not be set aside)', { generation_id: record.id, bytes, error: err });
    }
  }

  /** This host's copy of the exact recorded bytes, or undefined: what uploads and cloud-mode reads may use. */
  verifiedLocalArchive(record: GenerationRecord): Promise<Uint8Array | undefined> {
    return this.localArchive(record, { mismatch: 'miss' });
  }

  /** Whether this server still holds the generation (archive or folder), so it can be uploaded. */
  async hasLocalCopy(record: GenerationRecord): Promise<boolean> {
    const ref = refOf(record);
    return (await this.local.hasArchive(ref)) || (await this.local.locate(ref, ['hierarchical'])) !== undefined;
  }

  async cloudUrl(): Promise<undefined> {
    return undefined;
  }

  async removeCopies(ref: GenerationRef): Promise<void> {
    await this.local.remove(ref);
  }
}
