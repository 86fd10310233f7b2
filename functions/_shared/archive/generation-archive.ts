import { encodeManifest, sha256Hex, type Manifest } from './manifest.ts';
import { packTree, type TreeFile } from './tar-gz.ts';

/** A generation's identity on disk and in the bucket. */
export interface GenerationRef {
  projectId: string;
  generationId: string;
  version: number;
}

/** "v{version}__{generation_id}": CodebeGen's folder name, and the archive's root folder. */
export const generationDirName = (ref: Pick<GenerationRef, 'version' | 'generationId'>) => `v${ref.version}__${ref.generationId}`;

/** The bucket key: "{project_id}/generations/v{version}__{generation_id}.tar.gz". */
export const storageKey = (ref: GenerationRef) => `${ref.projectId}/generations/${generationDirName(ref)}.tar.gz`;

export interface PackedArchive {
  bytes: Uint8Array;
  sha256: string;
}

/**
 * Packs a generation as CodebeGen's Python would tar its folder: `v{n}__{id}/` holding `manifest.json`,
 * `source/<files>` and an empty `artifacts/`. Every entry's mtime is the manifest's `created_at`, so the same
 * generation always packs to the same bytes.
 */
export async function packGeneration(manifest: Manifest, sourceFiles: readonly TreeFile[]): Promise<PackedArchive> {
  const root = generationDirName({ version: manifest.version, generationId: manifest.generation_id });
  const bytes = await packTree({
    root,
    mtime: manifestTime(manifest),
    emptyDirs: ['artifacts', 'source'],
    files: [{ path: 'manifest.json', data: encodeManifest(manifest) }, ...sourceFiles.map((f) => ({ path: `source/${f.path}`, data: f.data }))],
  });
  return { bytes, sha256: sha256Hex(bytes) };
}

/** Python writes `created_at` without a zone (`datetime.utcnow().isoformat()`); read that as UTC. */
export function manifestTime(manifest: Pick<Manifest, 'created_at'>): Date {
  const s = manifest.created_at;
  const t = Date.parse(/(Z|[+-]\d\d:?\d\d)$/.test(s) ? s : `${s}Z`);
  return Number.isNaN(t) ? new Date(0) : new Date(t);
}
