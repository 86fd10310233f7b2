import { constants } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { manifestTime, packGeneration, type GenerationRef, type PackedArchive } from '../archive/generation-archive.ts';
import { buildManifest, contentDigest, parseManifest, type Manifest } from '../archive/manifest.ts';
import type { TreeFile } from '../archive/tar-gz.ts';
import { byCodePoint } from '../code-point-order.ts';
import { normaliseFileSet } from '../secure-path.ts';
import type { FoundGeneration } from './discover.ts';

/** Why a generation folder cannot be migrated as it is: reported, never thrown past the runner. */
export class InvalidGeneration extends Error {
  override name = 'InvalidGeneration';
}

export interface SizeLimits {
  maxFiles: number;
  maxFileBytes: number;
  maxGenerationBytes: number;
}

/** A generation read from disk and packed exactly as the API would have: ready to register and upload. */
export interface PreparedGeneration {
  ref: GenerationRef;
  manifest: Manifest;
  files: TreeFile[];
  archive: PackedArchive;
  contentSha256: string;
  /** How the manifest came about: kept from disk, or synthesised (and why). */
  manifestSource: 'disk' | 'synthesised';
  notes: string[];
}

/**
 * Reads one generation folder (never following a symlink, never opening anything but a regular file) and packs it
 * with `packGeneration`. Hierarchical and archived folders keep their `manifest.json` when it parses, names this
 * generation and lists exactly the files in `source/`; otherwise one is synthesised from the files (keeping the
 * old metadata and created_at when there was one; else the folder's mtime). Flat folders: every file is a source.
 * Throws InvalidGeneration for what cannot be migrated (a symlink or special file, an odd name, over the limits, no files).
 */
export async function prepareGeneration(root: string, found: FoundGeneration, ref: GenerationRef, limits: SizeLimits): Promise<PreparedGeneration> {
  const dir = join(root, found.path);
  const folder = await lstat(dir);
  if (!folder.isDirectory()) throw new InvalidGeneration('not a folder any more');
  const notes: string[] = [];
  let onDisk: Manifest | undefined;
  let sourceDir = dir;
  if (found.layout !== 'flat') {
    sourceDir = join(dir, 'source');
    const raw = await readRegularFile(join(dir, 'manifest.json'), 'manifest.json', limits.maxFileBytes).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    });
    if (raw === undefined) notes.push('no manifest.json: synthesised from the files');
    else if (!(onDisk = parseManifest(raw))) notes.push('manifest.json does not parse: synthesised from the files');
    const st = await lstat(sourceDir).catch(() => undefined);
    if (!st) throw new InvalidGeneration('no source/ folder');
    if (!st.isDirectory()) throw new InvalidGeneration('source/ is not a real folder (a symlink is not followed)');
  }
  const files = await readSourceTree(sourceDir, limits, found.layout === 'flat' ? '' : 'source/');
  if (files.length === 0) throw new InvalidGeneration('no source files');
  try {
    normaliseFileSet(files.map((f) => f.path));
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
    archive = await packGeneration(manifest, files);
  } catch (err) {
    throw new InvalidGeneration(`cannot be packed: ${(err as Error).message}`);
  }
  return { ref, manifest, files, archive, contentSha256: contentDigest(files, manifest.metadata), manifestSource, notes };
}

/** Every file under `dir` (relative paths, sorted); a symlink, FIFO, socket or device anywhere is an error. */
async function readSourceTree(dir: string, limits: SizeLimits, shown: string): Promise<TreeFile[]> {
  const out: TreeFile[] = [];
  let total = 0;
  const walk = async (abs: string, rel: string) => {
    for (const name of (await readdir(abs)).sort(byCodePoint)) {
      const childRel = rel ? `${rel}/${name}` : name;
      const childAbs = join(abs, name);
      const st = await lstat(childAbs);
      if (st.isSymbolicLink()) throw new InvalidGeneration(`${shown}${childRel} is a symbolic link (not followed)`);
      if (st.isDirectory()) await walk(childAbs, childRel);
      else if (!st.isFile()) throw new InvalidGeneration(`${shown}${childRel} is not a regular file`);
      else {
        if (out.length + 1 > limits.maxFiles) throw new InvalidGeneration(`more than ${limits.maxFiles} files (MAX_FILES)`);
        total += st.size;
        if (total > limits.maxGenerationBytes) throw new InvalidGeneration(`files total over ${limits.maxGenerationBytes} bytes (MAX_GENERATION_BYTES)`);
        out.push({ path: childRel, data: await readRegularFile(childAbs, `${shown}${childRel}`, limits.maxFileBytes) });
      }
    }
  };
  await walk(dir, '');
  return out.sort((a, b) => byCodePoint(a.path, b.path));
}

/**
 * Reads a regular file without following a symlink or blocking on a FIFO: O_NOFOLLOW | O_NONBLOCK, then the
 * open handle must be a regular file within the size limit (it could have been swapped after the lstat).
 */
async function readRegularFile(path: string, shown: string, maxBytes: number): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw err;
    if (code === 'ELOOP') throw new InvalidGeneration(`${shown} is a symbolic link (not followed)`);
    throw new InvalidGeneration(`${shown} cannot be read (${code ?? (err as Error).message})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidGeneration(`${shown} is not a regular file`);
    if (st.size > maxBytes) throw new InvalidGeneration(`${shown} is over ${maxBytes} bytes (MAX_FILE_BYTES)`);
    return new Uint8Array(await fh.readFile());
  } catch (err) {
    if (err instanceof InvalidGeneration) throw err;
    throw new InvalidGeneration(`${shown} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  } finally {
    await fh.close();
  }
}
