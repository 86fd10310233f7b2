import { checkGeneration, generationDirName, unpackGeneration, type GenerationRef } from '../archive/generation-archive.ts';
import { sha256Hex, type FileDigest } from '../archive/manifest.ts';
import type { UnpackLimits } from '../archive/tar-gz.ts';
import { asServiceWithin, type Tx } from '../db/database.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import * as outbox from '../db/outbox-repo.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalStore } from '../stores/local-store.ts';
import { refOf, sourceFileOf, type GenerationStorage, type LocalGenerationStorage } from './generation-storage.ts';
import type { UploadQueue } from './upload-queue.ts';

/** The disk's own failures, which no archive can cause: its bytes are then checked without being written. */
const DISK_TROUBLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EMFILE', 'ENFILE']);

/** A fetch of one generation's bytes, shared by every concurrent reader: the verified bytes, then the cache fill (never fails). */
interface PendingRead {
  bytes: Promise<Uint8Array>;
  filled: Promise<void>;
}

export interface HybridOptions {
  /** How long a generation pulled back from the cloud stays fresh in the cache. */
  cacheTtlMs: number;
  unpackLimits: UnpackLimits;
  now?: () => number;
}

/**
 * Cloud on: the save's transaction stages the archive in the upload outbox (Postgres, shared by every host), the
 * UploadQueue moves it to the bucket, and the local copy (written at save) and a cache serve reads fast. Reads go
 * local → fresh cache → outbox → bucket, so any host serves a generation as soon as its save is answered; bytes
 * from every tier are checked against the recorded sha256 before they are served or cached, and concurrent reads
 * of one generation's bytes share one fetch.
 */
export class HybridGenerationStorage implements GenerationStorage {
  readonly cloudEnabled = true;
  private readonly reads = new Map<string, PendingRead>();
  private readonly now: () => number;

  constructor(
    private readonly local: LocalGenerationStorage,
    private readonly cache: LocalStore,
    private readonly cloud: CloudStore,
    private readonly uploads: UploadQueue,
    private readonly log: Logger,
    private readonly opts: HybridOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  async stage(tx: Tx, record: GenerationRecord, archive: Uint8Array): Promise<void> {
    // The outbox is service-only; a user's save writes its own archive there and nothing else.
    await asServiceWithin(tx, () => this.uploads.stageClaimed(tx, record, archive));
  }

  async durable(tx: Tx, record: GenerationRecord): Promise<boolean> {
    return record.uploadStatus === 'uploaded' || (await asServiceWithin(tx, () => outbox.isStaged(tx, record.id)));
  }

  hasLocalCopy(record: GenerationRecord): Promise<boolean> {
    return this.local.hasLocalCopy(record);
  }

  saved(record: GenerationRecord, staged: boolean): void {
    this.uploads.enqueue(record, { claimed: staged });
  }

  async archive(record: GenerationRecord): Promise<Uint8Array> {
    // A local folder that no longer packs to the recorded bytes is passed over: the cache or the bucket has them.
    const local = await this.local.verifiedLocalArchive(record);
    if (local) return local;
    return this.read(record).bytes;
  }

  /**
   * One read of these exact bytes at a time: a reader arriving while a fetch is under way joins it, and one
   * arriving after finds the cache filled. Bytes from the outbox or the bucket are answered once they match the
   * recorded sha256 and pass the unpacker's checks in memory, while the cache fills beside; the entry goes
   * only once the fill ends, so readers arriving meanwhile share this fetch too. Keyed by id and sha256, so a
   * generation deleted and saved again under its id never joins the old one's read.
   */
  private read(record: GenerationRecord): PendingRead {
    const key = `${record.id}:${record.archiveSha256}`;
    let entry = this.reads.get(key);
    if (!entry) {
      const read = this.cachedOrRemote(record);
      entry = { bytes: read.then((r) => r.bytes), filled: read.then((r) => r.filled, () => {}) };
      this.reads.set(key, entry);
      void entry.filled.finally(() => this.reads.delete(key));
    }
    return entry;
  }

  /**
   * Local folder, then a fresh cache entry; else the archive (one fetch for every concurrent reader), and the file
   * from the cache it fills — or from the bytes themselves when they came from the local archive or the cache
   * could not be written. Waiting for the fill means 50 readers of one cold generation unpack it once, not 50 times.
   */
  async sourceFile(record: GenerationRecord, expected: FileDigest): Promise<Uint8Array | undefined> {
    const near = (await this.local.folderFile(record, expected)) ?? (await this.cachedFile(record, expected));
    if (near) return near;
    const local = await this.local.verifiedLocalArchive(record);
    if (local) return sourceFileOf(record, local, expected);
    const { bytes, filled } = this.read(record);
    const archive = await bytes;
    await filled;
    return (await this.cachedFile(record, expected)) ?? sourceFileOf(record, archive, expected);
  }

  private async cachedFile(record: GenerationRecord, expected: FileDigest): Promise<Uint8Array | undefined> {
    const ref = refOf(record);
    return (await this.cacheFresh(ref)) ? this.cache.readSourceFile(ref, expected) : undefined;
  }

  /** Whether the cache holds the generation, written less than CACHE_TTL_HOURS ago. */
  private async cacheFresh(ref: GenerationRef): Promise<boolean> {
    const at = await this.cache.writtenAt(ref);
    return at !== undefined && this.now() - at.getTime() <= this.opts.cacheTtlMs;
  }

  /** The verified bytes, and the cache fill they started (settled: it never fails). */
  private async cachedOrRemote(record: GenerationRecord): Promise<{ bytes: Uint8Array; filled?: Promise<void> }> {
    const cached = await this.fromCache(record);
    if (cached) return { bytes: cached };
    if (record.uploadStatus !== 'uploaded') {
      const staged = await this.uploads.stagedArchive(record);
      if (staged) return this.checked(record, staged);
    }
    try {
      return await this.checked(record, await this.fromCloud(record));
    } catch (err) {
      // Not uploaded and not in the bucket either: say what is true, not "not found".
      if (record.uploadStatus !== 'uploaded' && err instanceof AppError && err.code === ErrorCode.CloudNotFound) {
        throw new AppError(ErrorCode.StorageUnavailable, 503, `generation has no readable copy (upload status: ${record.uploadStatus})`, { cause: err });
      }
      throw err;
    }
  }

  async cloudUrl(record: GenerationRecord, expiresInSeconds: number): Promise<string | undefined> {
    if (record.uploadStatus !== 'uploaded') return undefined;
    try {
      return await this.cloud.signedUrl(record.storageKey, expiresInSeconds, `${generationDirName(refOf(record))}.tar.gz`);
    } catch (err) {
      // Our own signed URL still works (cache-first reads), so a cloud hiccup does not fail the request.
      this.log.warn('cloud signed URL failed; answering with the local URL', { generation_id: record.id, error: err });
      return undefined;
    }
  }

  async removeCopies(ref: GenerationRef, storageKey: string): Promise<void> {
    await this.cache.remove(ref);
    await this.local.removeCopies(ref);
    // One try: a delete's first attempt must not wait out a Storage outage; the tombstone keeps the rest.
    await this.cloud.remove([storageKey], { once: true });
  }

  private async fromCache(record: GenerationRecord): Promise<Uint8Array | undefined> {
    const ref = refOf(record);
    if (!(await this.cacheFresh(ref))) return undefined;
    const bytes = await this.cache.readArchive(ref);
    return bytes && sha256Hex(bytes) === record.archiveSha256 ? bytes : undefined;
  }

  private async fromCloud(record: GenerationRecord): Promise<Uint8Array> {
    const started = this.now();
    const bytes = await this.cloud.download(record.storageKey);
    if (sha256Hex(bytes) !== record.archiveSha256) {
      this.log.error('cloud copy does not match its record; not cached', { generation_id: record.id, key: record.storageKey, bytes: bytes.byteLength });
      throw new AppError(ErrorCode.CloudCorrupt, 502, 'the cloud copy of this generation failed its integrity check');
    }
    this.log.info('generation pulled from the cloud', { generation_id: record.id, bytes: bytes.byteLength, ms: this.now() - started });
    return bytes;
  }

  /**
   * Bytes that matched their sha256, checked by the unpacker in memory (`checkGeneration`): an archive it refuses is
   * never served. Answered then, while the cache fills beside (the disk write is not waited for).
   */
  private async checked(record: GenerationRecord, bytes: Uint8Array): Promise<{ bytes: Uint8Array; filled: Promise<void> }> {
    await checkGeneration(bytes, refOf(record), this.opts.unpackLimits);
    return { bytes, filled: this.fillCache(record, bytes) };
  }

  /**
   * Unpacked straight into the cache's scratch folder, checked on the way again (the files are never all in
   * memory). Never fails: a cache that cannot be written (a full disk) costs only speed.
   */
  private async fillCache(record: GenerationRecord, bytes: Uint8Array): Promise<void> {
    const ref = refOf(record);
    try {
      await this.cache.writeFilled(ref, bytes, (dir) => unpackGeneration([bytes], ref, this.opts.unpackLimits, dir));
    } catch (err) {
      this.log.warn(DISK_TROUBLE.has((err as NodeJS.ErrnoException).code ?? '') ? 'cache not filled (the disk failed)' : 'cache not filled', { generation_id: record.id, error: err });
    }
  }
}
