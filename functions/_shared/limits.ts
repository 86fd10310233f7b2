import type { UnpackLimits } from './archive/tar-gz.ts';
import { MAX_PATH_LENGTH } from './secure-path.ts';

/**
 * What one generation may be, from the configuration: the one set of limits. A save accepts only what every
 * reader accepts (the cold read's check and the unpacker that fills the cache, the migration), because the readers' limits
 * are derived from these, here, and nowhere else.
 */
export interface Limits {
  maxFiles: number;
  maxFileBytes: number;
  maxGenerationBytes: number;
  maxMetadataBytes: number;
  maxPathDepth: number;
  maxFolders: number;
  /** Cloud on: Storage's upload limit, which the archive itself must fit. */
  maxArchiveBytes?: number;
}

/** The archive prefix at its longest: `v{version}__{generation_id}/source/`, version up to Postgres' integer. */
const LONGEST_PREFIX = 'v2147483647__00000000-0000-0000-0000-000000000000/source/';

/** A file path, as the caller sends it, so that the archive's path (prefix + path) passes the unpacker's bound. */
export const MAX_SAVED_PATH_LENGTH = MAX_PATH_LENGTH - LONGEST_PREFIX.length;

/** The largest manifest.json a save may write: a few KiB per file (its path twice, size, sha256) and the metadata. */
export const maxManifestBytes = (l: Pick<Limits, 'maxFiles' | 'maxMetadataBytes'>): number => l.maxFiles * 2048 + 4 * l.maxMetadataBytes + 65_536;

/**
 * What the unpacker must accept for every generation a save can accept: each file and each folder is an entry, plus
 * the generation's own folder, `source/`, `artifacts/` and `manifest.json`; the manifest is the largest entry there
 * can be besides a file.
 */
export function unpackLimitsFor(l: Limits): UnpackLimits {
  const manifest = maxManifestBytes(l);
  return {
    maxEntries: l.maxFiles + l.maxFolders + 4,
    maxFileBytes: Math.max(l.maxFileBytes, manifest),
    maxTotalBytes: l.maxGenerationBytes + manifest,
  };
}
