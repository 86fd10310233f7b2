import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readChunksSync } from '../archive/disk-tree.ts';
import { manifestTime, packGeneration, type GenerationRef, type PackedArchive } from '../archive/generation-archive.ts';
import { buildManifest, contentDigest, parseManifest, type FileDigest, type Manifest } from '../archive/manifest.ts';
import type { StreamedFile, TreeFile } from '../archive/tar-gz.ts';
import { byCodePoint } from '../code-point-order.ts';
import { MAX_SAVED_PATH_LENGTH, type Limits } from '../limits.ts';
import { normaliseFileSet } from '../secure-path.ts';
import type { FoundGeneration } from './discover.ts';

/** Why a generation folder cannot be migrated as it is: reported, never thrown past the runner. */
export class InvalidGeneration extends Error {
  override name = 'InvalidGeneration';
}

export type SizeLimits = Pick<Limits, 'maxFiles' | 'maxFileBytes' | 'maxGenerationBytes' | 'maxPathDepth' | 'maxFolders'>;

/** A generation read from disk and packed exactly as the API would have: ready to register and upload. */
export interface PreparedGeneration {
  ref: GenerationRef;
  manifest: Manifest;
  files: FileDigest[];
  archive: PackedArchive;
  contentSha256: string;
  /** How the manifest came about: kept from disk, or synthesised (and why). */
  manifestSource: 'disk' | 'synthesised';
  notes: string[];
}

/**
 * Reads one generation folder (never following a symlink, never opening anything but a regular file) and packs it
 * with `packGeneration`. Every file is hashed first (the manifest, first in the archive, lists their sha256); the
 * first `keepBytes` of files are kept from that read and packed from memory, and the rest are streamed from disk
 * again, so a typical generation is read once and a huge one never held whole. Hierarchical and archived folders keep their `manifest.json` when it parses, names this
 * generation and lists exactly the files in `source/`; otherwise one is synthesised from the files (keeping the
 * old metadata and created_at when there was one; else the folder's mtime). Flat folders: every file is a source.
 * Throws InvalidGeneration for what cannot be migrated (a symlink or special file, an odd name, over the limits, no files).
 */
export async function prepareGeneration(root: string, found: FoundGeneration, ref: GenerationRef, limits: SizeLimits, keepBytes = KEEP_BYTES): Promise<PreparedGeneration> {
  const dir = join(root, found.path);
  const folder = lstatSync(dir);
  if (!folder.isDirectory()) throw new InvalidGeneration('not a folder any more');
  const notes: string[] = [];
  let onDisk: Manifest | undefined;
  let sourceDir = dir;
  if (found.layout !== 'flat') {
    sourceDir = join(dir, 'source');
    const raw = readManifest(join(dir, 'manifest.json'), limits.maxFileBytes);
    if (raw === undefined) notes.push('no manifest.json: synthesised from the files');
    else if (!(onDisk = parseManifest(raw))) notes.push('manifest.json does not parse: synthesised from the files');
    const st = lstatSync(sourceDir, { throwIfNoEntry: false });
    if (!st) throw new InvalidGeneration('no source/ folder');
    if (!st.isDirectory()) throw new InvalidGeneration('source/ is not a real folder (a symlink is not followed)');
  }
  const files = readSourceTree(sourceDir, limits, found.layout === 'flat' ? '' : 'source/', keepBytes);
  if (files.length === 0) throw new InvalidGeneration('no source files');
  try {
    // The API's own bounds, so what is migrated can be read back like anything saved.
    normaliseFileSet(files.map((f) => f.path), 'files', { maxLength: MAX_SAVED_PATH_LENGTH, maxDepth: limits.maxPathDepth, maxFolders: limits.maxFolders });
  } catch (err) {
    throw new InvalidGeneration(`file names cannot be stored: ${(err as Error).message}`);
  }

  let manifest: Manifest;
  let manifestSource: PreparedGeneration['manifestSource'] = 'synthesised';
  const samePaths = (m: Manifest) => {
    const listed = [...m.files].sort(byCodePoint);
    return listed.length === files.length && listed.every((p, i) => p === files[i]!.path);
  };
  if (onDisk && onDisk.generation_id === ref.generationId && onDisk.project_id === ref.projectId && onDisk.version === ref.version && samePaths(onDisk)) {
    manifest = onDisk;
    manifestSource = 'disk';
  } else {
    if (onDisk) notes.push('manifest.json names another generation or other files: synthesised from the files, keeping its metadata and created_at');
    manifest = buildManifest({
      generationId: ref.generationId,
      projectId: ref.projectId,
      version: ref.version,
      createdAt: onDisk && manifestTime(onDisk).getTime() !== 0 ? manifestTime(onDisk) : folder.mtime,
      files,
      metadata: onDisk?.metadata ?? {},
    });
  }
  let archive: PackedArchive;
  try {
    archive = await packGeneration(manifest, files.map(packable));
  } catch (err) {
    throw err instanceof InvalidGeneration ? err : new InvalidGeneration(`cannot be packed: ${(err as Error).message}`);
  }
  const digests = files.map(({ path, size, sha256 }) => ({ path, size, sha256 }));
  return { ref, manifest, files: digests, archive, contentSha256: contentDigest(digests, manifest.metadata), manifestSource, notes };
}

/** Per generation, the bytes of files kept from the hashing read (a typical generation is ~300 KB). */
const KEEP_BYTES = 8 * 1024 * 1024;

/** A source file found on disk: where it is, what the manifest records of it, and its bytes if kept. */
interface SourceFile extends FileDigest {
  abs: string;
  shown: string;
  data?: Uint8Array;
}

/**
 * Every file under `dir` (relative paths, sorted) and its sha256; a symlink, FIFO, socket or device anywhere is an
 * error. Read with synchronous calls: a generation is a few hundred small files, and an async call costs a
 * thread-pool round trip and a promise, 5× the CPU of the read itself (docs/BENCHMARKS.md §5); the runner's
 * network waits overlap with other generations all the same.
 */
function readSourceTree(dir: string, limits: SizeLimits, shown: string, keepBytes: number): SourceFile[] {
  const out: SourceFile[] = [];
  let total = 0;
  let kept = 0;
  const walk = (abs: string, rel: string) => {
    const entries = readdirSync(abs, { withFileTypes: true }).sort((a, b) => byCodePoint(a.name, b.name));
    for (const entry of entries) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      const childAbs = join(abs, entry.name);
      if (entry.isSymbolicLink()) throw new InvalidGeneration(`${shown}${childRel} is a symbolic link (not followed)`);
      if (entry.isDirectory()) walk(childAbs, childRel);
      else if (!entry.isFile()) throw new InvalidGeneration(`${shown}${childRel} is not a regular file`);
      else {
        if (out.length + 1 > limits.maxFiles) throw new InvalidGeneration(`more than ${limits.maxFiles} files (MAX_FILES)`);
        const file = { path: childRel, abs: childAbs, shown: `${shown}${childRel}` };
        const { fd, size } = openSource(childAbs, file.shown, limits.maxFileBytes);
        try {
          total += size;
          if (total > limits.maxGenerationBytes) throw new InvalidGeneration(`files total over ${limits.maxGenerationBytes} bytes (MAX_GENERATION_BYTES)`);
          const keep = kept + size <= keepBytes;
          const hash = createHash('sha256');
          let data: Uint8Array = new Uint8Array(0);
          for (const chunk of readSource(fd, size, file.shown, keep)) {
            hash.update(chunk);
            data = chunk;
          }
          if (keep) kept += size;
          out.push({ ...file, size, sha256: hash.digest('hex'), ...(keep && { data }) });
        } finally {
          closeSync(fd);
        }
      }
    }
  };
  walk(dir, '');
  return out.sort((a, b) => byCodePoint(a.path, b.path));
}

/** A source file for the packer: its kept bytes, or read from disk again in chunks, still the bytes hashed before. */
function packable(f: SourceFile): TreeFile | StreamedFile {
  if (f.data) return { path: f.path, data: f.data };
  return {
    path: f.path,
    size: f.size,
    async *chunks() {
      const { fd } = openSource(f.abs, f.shown, Infinity);
      try {
        const hash = createHash('sha256');
        for (const chunk of readSource(fd, f.size, f.shown)) {
          hash.update(chunk);
          yield chunk;
        }
        if (hash.digest('hex') !== f.sha256) throw new InvalidGeneration(`${f.shown} changed while being migrated`);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** The folder's manifest.json whole, if there is one. */
function readManifest(path: string, maxBytes: number): Uint8Array | undefined {
  let opened;
  try {
    opened = openSource(path, 'manifest.json', maxBytes);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const { fd, size } = opened;
  try {
    return [...readSource(fd, size, 'manifest.json', true)][0] ?? new Uint8Array(0);
  } finally {
    closeSync(fd);
  }
}

/** An open file's bytes in chunks (see `readChunksSync`): exactly `size` bytes, or an InvalidGeneration. */
function* readSource(fd: number, size: number, shown: string, whole = false): Generator<Uint8Array> {
  try {
    yield* readChunksSync(fd, size, whole);
  } catch (err) {
    throw new InvalidGeneration(`${shown} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Opens a regular file of at most `maxBytes` without following a symlink or blocking on a FIFO: what the walk saw
 * could have been swapped since, so the open descriptor is checked again. Anything else is an InvalidGeneration
 * (ENOENT passes through). The caller closes the descriptor.
 */
function openSource(path: string, shown: string, maxBytes: number): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw err;
    if (code === 'ELOOP') throw new InvalidGeneration(`${shown} is a symbolic link (not followed)`);
    throw new InvalidGeneration(`${shown} cannot be read (${code ?? (err as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InvalidGeneration(`${shown} is not a regular file`);
    if (st.size > maxBytes) throw new InvalidGeneration(`${shown} is over ${maxBytes} bytes (MAX_FILE_BYTES)`);
    return { fd, size: st.size };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
