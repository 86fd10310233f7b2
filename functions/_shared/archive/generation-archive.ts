import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArchive } from '../errors.ts';
import { unpackToDirectory } from './disk-tree.ts';
import { encodeManifest, parseManifest, sha256Hex, type Manifest } from './manifest.ts';
import { concat, packTree, packTreeLegacy, unpackStream, type ByteChunks, type StreamedFile, type TreeFile, type UnpackLimits } from './tar-gz.ts';

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
 * `unpackGeneration`'s checks without a disk: every entry inflated in memory and dropped, all of them under
 * `v{version}__{generation_id}/`, and its manifest naming this generation. What a read does before serving bytes it
 * fetched, while the cache fills beside.
 */
export async function checkGeneration(gz: ByteChunks, ref: GenerationRef, limits: UnpackLimits): Promise<Manifest> {
  const root = generationDirName(ref);
  let manifest: Uint8Array | undefined;
  const inRoot = (path: string, isFile: boolean) => {
    if (!(path.startsWith(`${root}/`) || (!isFile && path === root))) throw invalidArchive(`entry ${JSON.stringify(path)} is outside ${root}/`);
  };
  await unpackStream(gz, limits, {
    folder: (path) => inRoot(path, false),
    async file(path, _size, chunks) {
      inRoot(path, true);
      const keep = path === `${root}/manifest.json`;
      const parts: Uint8Array[] = [];
      for await (const c of chunks) if (keep) parts.push(c.slice());
      if (keep) manifest = concat(parts);
    },
  });
  return namesGeneration(manifest, ref);
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
