import { invalidArchive } from '../errors.ts';
import { encodeManifest, parseManifest, sha256Hex, type Manifest } from './manifest.ts';
import { packTree, unpackTree, type TreeFile, type UnpackLimits } from './tar-gz.ts';

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

/**
 * Reads a generation archive back (already verified by sha256, still unpacked with every safety check):
 * everything must sit under `v{version}__{generation_id}/`, and its manifest must name this generation.
 */
export async function readGenerationArchive(
  bytes: Uint8Array,
  ref: GenerationRef,
  limits: UnpackLimits,
): Promise<{ manifest: Manifest; files: TreeFile[] }> {
  const tree = await unpackTree(bytes, limits);
  const root = `${generationDirName(ref)}/`;
  const outside = [...tree.dirs.map((d) => `${d}/`), ...tree.files.map((f) => f.path)].find((p) => !p.startsWith(root) && p !== root);
  if (outside) throw invalidArchive(`entry ${JSON.stringify(outside)} is outside ${root}`);
  const manifestFile = tree.files.find((f) => f.path === `${root}manifest.json`);
  const manifest = manifestFile && parseManifest(manifestFile.data);
  if (!manifest) throw invalidArchive('no readable manifest.json');
  if (manifest.generation_id !== ref.generationId || manifest.project_id !== ref.projectId || manifest.version !== ref.version) {
    throw invalidArchive('manifest.json names another generation');
  }
  const source = `${root}source/`;
  const files = tree.files.filter((f) => f.path.startsWith(source)).map((f) => ({ path: f.path.slice(source.length), data: f.data }));
  return { manifest, files };
}
