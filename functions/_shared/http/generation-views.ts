import { generationDirName } from '../archive/generation-archive.ts';
import type { DownloadSigner } from '../auth/download-token.ts';
import type { GenerationRecord, GenerationSummary } from '../db/generations-repo.ts';
import type { GenerationService } from '../storage/generation-service.ts';

export interface GenerationViews {
  /** A generation as listings show it (no URLs). */
  summary(r: GenerationSummary): ReturnType<typeof summaryOf>;
  /** A generation with freshly signed download URLs: what save, get, pin and restore answer. */
  full(r: GenerationRecord): Promise<ReturnType<typeof summaryOf> & { download_url: string; zip_url: string; expires_in: number }>;
}

function summaryOf(r: GenerationSummary, cloudEnabled: boolean) {
  return {
    generation_id: r.id,
    project_id: r.projectId,
    version: r.version,
    file_count: r.fileCount,
    total_size_bytes: r.totalSizeBytes,
    sha256: r.archiveSha256,
    archive_size_bytes: r.archiveSizeBytes,
    created_at: r.createdAt.toISOString(),
    pinned: r.pinned,
    storage: {
      local_path: `${r.projectId}/generations/${generationDirName({ version: r.version, generationId: r.id })}`,
      cloud_enabled: cloudEnabled,
      uploaded: r.uploadStatus === 'uploaded',
      status: r.uploadStatus,
    },
  };
}

/** How generation rows are rendered as JSON bodies, with the URLs signed for them. */
export function generationViews(opts: { service: GenerationService; downloads: DownloadSigner; functionUrl: string; cloudEnabled: boolean }): GenerationViews {
  const { service, downloads, functionUrl } = opts;
  return {
    summary: (r) => summaryOf(r, opts.cloudEnabled),
    /**
     * `download_url` is Supabase's signed URL once uploaded, our own signed URL before that; `zip_url` is always
     * ours (the bucket holds only the tar.gz), signed with the same token: a link is for one generation's exact
     * archive, in either format.
     */
    async full(r) {
      const [cloud, { token }] = await Promise.all([
        service.cloudUrl(r, downloads.ttlSeconds),
        downloads.sign({ generationId: r.id, ownerId: r.ownerId, archiveSha256: r.archiveSha256 }),
      ]);
      const local = `${functionUrl}/${r.id}/download?token=${encodeURIComponent(token)}`;
      const { storage, ...rest } = summaryOf(r, opts.cloudEnabled);
      return {
        ...rest,
        download_url: cloud ?? local,
        zip_url: `${functionUrl}/${r.id}/download?format=zip&token=${encodeURIComponent(token)}`,
        expires_in: downloads.ttlSeconds,
        storage,
      };
    },
  };
}
