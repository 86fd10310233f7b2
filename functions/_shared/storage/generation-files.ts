import { manifestTime } from '../archive/generation-archive.ts';
import { sha256Hex, type FileDigest } from '../archive/manifest.ts';
import { readSourceFiles } from '../archive/source-files.ts';
import { zipFromTarGz } from '../archive/zip-stream.ts';
import type { Principal } from '../auth/principal.ts';
import { byCodePoint } from '../code-point-order.ts';
import type { GenerationRecord } from '../db/generations-repo.ts';
import { AppError, badRequest, ErrorCode, generationNotFound, internal } from '../errors.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import { addPatches, DEFAULT_PATCH_LIMITS, diffFileSets, type FileSetDiff, type PatchLimits } from './generation-diff.ts';
import type { GenerationService } from './generation-service.ts';
import { recordedArchiveLimits, refOf, type GenerationStorage } from './generation-storage.ts';

export interface GenerationFilesDeps {
  /** Reads rows as the principal: RLS decides, as everywhere. */
  service: GenerationService;
  storage: GenerationStorage;
  patchLimits?: PatchLimits;
}

/** A file of a generation, found by path, its bytes read on demand (a 304 never reads them). */
export interface OpenedFile {
  record: GenerationRecord;
  file: FileDigest;
  read(): Promise<Uint8Array>;
}

/**
 * A generation's files one by one: the listing, a single file, a diff between two generations of a project, and
 * the zip. Listings and diffs come from the manifest the row records (path, size, sha256 of every file) and read
 * no archive; bytes come from the nearest copy through GenerationStorage, checked against that manifest.
 */
export class GenerationFiles {
  constructor(private readonly deps: GenerationFilesDeps) {}

  /** Every source file of a generation the principal may read, sorted by path. */
  async list(who: Principal, id: string): Promise<{ record: GenerationRecord; files: FileDigest[] }> {
    const record = await this.deps.service.get(who, id);
    return { record, files: await this.digests(record) };
  }

  /** One file by its path (normalised; 400 for a path that could never be one, 404 for one not in the generation). */
  async open(who: Principal, id: string, path: string): Promise<OpenedFile> {
    const wanted = normaliseRelativePath(path);
    const { record, files } = await this.list(who, id);
    const file = files.find((f) => f.path === wanted);
    if (!file) throw new AppError(ErrorCode.FileNotFound, 404, 'no such file in this generation');
    return { record, file, read: () => this.read(who, record, file) };
  }

  /**
   * What changed from generation `againstId` to `id` (both the principal's, of one project): added, removed,
   * modified and the count unchanged, from the manifests; with `patch`, unified diffs of the text files within the
   * patch limits. One the principal cannot see is a 404 whichever it is, before anything else is said of it.
   */
  async diff(who: Principal, id: string, againstId: string, opts: { patch: boolean }): Promise<FileSetDiff & { to: GenerationRecord; from: GenerationRecord; patch_bytes?: number }> {
    const [to, from] = await Promise.all([this.deps.service.get(who, id), this.deps.service.get(who, againstId)]);
    if (to.projectId !== from.projectId) throw badRequest('against: a generation of another project (diffs compare generations of one project)');
    const diff = diffFileSets(await this.digests(from), await this.digests(to));
    if (!opts.patch) return { ...diff, to, from };
    const patch_bytes = await addPatches(diff, (side, file) => this.read(who, side === 'from' ? from : to, file), this.deps.patchLimits ?? DEFAULT_PATCH_LIMITS);
    return { ...diff, to, from, patch_bytes };
  }

  /**
   * The generation as a zip stream with the same root folder and files as its tar.gz, made from the verified
   * archive as it is read. `archiveSha256`: a download link's, see GenerationService.archive.
   */
  async zip(who: Principal, id: string, archiveSha256?: string): Promise<{ record: GenerationRecord; stream: ReadableStream<Uint8Array> }> {
    const { record, bytes } = await this.deps.service.archive(who, id, archiveSha256);
    return { record, stream: zipFromTarGz([bytes], recordedArchiveLimits(record), manifestTime(record.manifest)) };
  }

  /**
   * Path, size and sha256 of every source file: the manifest's `file_details`. Manifests written by CodebeGen's
   * Python service (migrated generations) have none; theirs come from the verified archive, read once per call.
   */
  private async digests(record: GenerationRecord): Promise<FileDigest[]> {
    const details = record.manifest.file_details;
    if (details) return details.map((d) => ({ path: d.path, size: d.size_bytes, sha256: d.sha256 })).sort((a, b) => byCodePoint(a.path, b.path));
    const bytes = await this.deps.storage.archive(record);
    const files = await readSourceFiles([bytes], refOf(record), recordedArchiveLimits(record));
    return files.map((f) => ({ path: f.path, size: f.data.byteLength, sha256: sha256Hex(f.data) })).sort((a, b) => byCodePoint(a.path, b.path));
  }

  private async read(who: Principal, record: GenerationRecord, file: FileDigest): Promise<Uint8Array> {
    let bytes: Uint8Array | undefined;
    try {
      bytes = await this.deps.storage.sourceFile(record, file);
    } catch (err) {
      // Deleted while it was being read: that is a 404, not a storage failure.
      const gone = await this.deps.service.get(who, record.id).then(
        (r) => r.archiveSha256 !== record.archiveSha256,
        (e) => e instanceof AppError && e.code === ErrorCode.GenerationNotFound,
      );
      if (gone) throw generationNotFound();
      throw err;
    }
    if (!bytes) throw internal(`file ${JSON.stringify(file.path)} of generation ${record.id} is in its manifest but not in its archive`);
    return bytes;
  }
}
