import { generationDirName, unpackGeneration } from '../archive/generation-archive.ts';
import { sha256Hex } from '../archive/manifest.ts';
import type { UnpackLimits } from '../archive/tar-gz.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import { AppError, ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CloudStore } from '../stores/cloud-store.ts';
import type { LocalStore } from '../stores/local-store.ts';
import { refOf, type GenerationStorage, type LocalGenerationStorage } from './generation-storage.ts';
import type { UploadQueue } from './upload-queue.ts';

export interface HybridOptions {
  /** How long a generation pulled back from the cloud stays fresh in the cache. */
  cacheTtlMs: number;
  unpackLimits: UnpackLimits;
  now?: () => number;
}

/**
 * Cloud on: the local copy first (written at save), the bucket behind it (uploaded in the background by the
 * UploadQueue), and a cache in front of the bucket for generations whose local copy is gone. Reads go
 * local → fresh cache → cloud; a cloud read is checked against the recorded sha256 before it is cached or served,
 * and concurrent reads of one generation share one download.
 */
export class HybridGenerationStorage implements GenerationStorage {
  readonly cloudEnabled = true;
  private readonly reads = new Map<string, Promise<Uint8Array>>();
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

  saved(record: GenerationRecord): void {
    this.uploads.enqueue(record);
  }

  async archive(record: GenerationRecord): Promise<Uint8Array> {
    // A local folder that no longer packs to the recorded bytes is passed over: the cache or the bucket has them.
    const local = await this.local.localArchive(record, { mismatch: 'miss' });
    if (local) return local;
    // One cache-or-cloud read per generation at a time: a reader arriving while a download is under way joins it,
    // and one arriving after finds the cache filled (the entry goes only once the cache is written).
    let pending = this.reads.get(record.id);
    if (!pending) {
      pending = this.cachedOrCloud(record).finally(() => this.reads.delete(record.id));
      this.reads.set(record.id, pending);
    }
    return pending;
  }

  private async cachedOrCloud(record: GenerationRecord): Promise<Uint8Array> {
    const cached = await this.fromCache(record);
    if (cached) return cached;
    if (record.uploadStatus !== 'uploaded') {
      throw new AppError(ErrorCode.StorageUnavailable, 503, 'generation is neither on this server nor uploaded yet');
    }
    return this.fromCloud(record);
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

  async removeRemote(record: GenerationRecord): Promise<void> {
    // Whatever the status says, an upload may be under way or have landed; removing a missing object is fine.
    await this.cloud.remove([record.storageKey]);
  }

  async remove(record: GenerationRecord): Promise<void> {
    await this.cache.remove(refOf(record));
    await this.local.remove(record);
  }

  private async fromCache(record: GenerationRecord): Promise<Uint8Array | undefined> {
    const ref = refOf(record);
    const at = await this.cache.writtenAt(ref);
    if (!at || this.now() - at.getTime() > this.opts.cacheTtlMs) return undefined;
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
    const ref = refOf(record);
    // Unpacked straight into the cache's scratch folder, checked on the way: the files are never all in memory.
    await this.cache.writeFilled(ref, bytes, (dir) => unpackGeneration([bytes], ref, this.opts.unpackLimits, dir));
    this.log.info('generation pulled from the cloud into the cache', { generation_id: record.id, bytes: bytes.byteLength, ms: this.now() - started });
    return bytes;
  }
}
