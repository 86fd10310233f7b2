import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArchive } from '../errors.ts';
import { unpackToDirectory } from './disk-tree.ts';
import { encodeManifest, parseManifest, sha256Hex, type Manifest } from './manifest.ts';
import { packTree, packTreeLegacy, unpackTree, type ByteChunks, type StreamedFile, type TreeFile, type UnpackedTree, type UnpackLimits } from './tar-gz.ts';

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
 * generation always packs to the same bytes (on one runtime; see `packTree`). `legacy`: with the packer of archives
 * recorded before issue 15, only to check them.
 */
export async function packGeneration(manifest: Manifest, sourceFiles: readonly (TreeFile | StreamedFile)[], packer: 'zlib' | 'legacy' = 'zlib'): Promise<PackedArchive> {
  const root = generationDirName({ version: manifest.version, generationId: manifest.generation_id });
  const bytes = await (packer === 'zlib' ? packTree : packTreeLegacy)({
    root,
    mtime: manifestTime(manifest),
    emptyDirs: ['artifacts', 'source'],
    files: [{ path: 'manifest.json', data: encodeManifest(manifest) }, ...sourceFiles.map((f) => ({ ...f, path: `source/${f.path}` }))],
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
 * Unpacks a generation archive (already verified by sha256, still unpacked with every safety check) into `dest`,
 * which must not exist: everything must sit under `v{version}__{generation_id}/` — that folder becomes `dest` —
 * and its manifest must name this generation. Files go to disk as they inflate, never all in memory.
 * On failure nothing is left at `dest`.
 */
export async function unpackGeneration(gz: ByteChunks, ref: GenerationRef, limits: UnpackLimits, dest: string): Promise<Manifest> {
  await unpackToDirectory(gz, dest, limits, generationDirName(ref));
  try {
    // Written just now by the unpack: a regular file (an archive holds no links), at most maxFileBytes.
    return namesGeneration(await readFile(join(dest, 'manifest.json')).catch(() => undefined), ref);
  } catch (err) {
    await rm(dest, { recursive: true, force: true });
    throw err;
  }
}

/**
 * `unpackGeneration`'s checks without a disk, on an archive held in memory: every entry under
 * `v{version}__{generation_id}/` and its manifest naming this generation. What a read does before serving bytes it
 * fetched; gives what `unpackGeneration` would write, paths relative to the generation's folder.
 */
export async function checkGeneration(gz: Uint8Array, ref: GenerationRef, limits: UnpackLimits): Promise<{ manifest: Manifest; tree: UnpackedTree }> {
  const tree = await unpackTree(gz, limits, generationDirName(ref));
  return { manifest: namesGeneration(tree.files.find((f) => f.path === 'manifest.json')?.data, ref), tree };
}

/** The archive's manifest, which must parse and name this very generation. */
function namesGeneration(bytes: Uint8Array | undefined, ref: GenerationRef): Manifest {
  const manifest = bytes && parseManifest(bytes);
  if (!manifest) throw invalidArchive('no readable manifest.json');
  if (manifest.generation_id !== ref.generationId || manifest.project_id !== ref.projectId || manifest.version !== ref.version) {
    throw invalidArchive('manifest.json names another generation');
  }
  return manifest;
}
