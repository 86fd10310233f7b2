import { gunzipSync } from 'node:zlib';
import { gzipSync } from 'fflate';
import { packTar, unpackTar, type TarHeader } from 'modern-tar';
import { invalidArchive, AppError, ErrorCode } from '../errors.ts';
import { byCodePoint } from '../code-point-order.ts';
import { normaliseRelativePath } from '../secure-path.ts';

/** One file of a tree, by its path relative to the tree's root ("source/app/main.py"). */
export interface TreeFile {
  path: string;
  data: Uint8Array;
}

export interface PackOptions {
  /** The single top-level folder of the archive, e.g. "v3__<generation_id>". */
  root: string;
  files: readonly TreeFile[];
  /** Empty folders to include (e.g. "artifacts"). */
  emptyDirs?: readonly string[];
  /** Every entry's mtime; the same value always gives the same bytes. */
  mtime: Date;
}

const GZIP_LEVEL = 6;

/**
 * Packs a tree as a deterministic tar.gz laid out like Python's `tarfile.add(dir, arcname=root)`:
 * the root folder, then each folder's children sorted by name, folders before their contents.
 * Fixed owner (0/0, no names), modes 0644/0755, the given mtime and a gzip header without time or name,
 * so the same tree always gives the same bytes on Node and on Deno (fflate, not the platform's zlib).
 */
export async function packTree(opts: PackOptions): Promise<Uint8Array> {
  const root = normaliseRelativePath(opts.root);
  const mtime = new Date(Math.floor(opts.mtime.getTime() / 1000) * 1000);
  type Dir = { dirs: Map<string, Dir>; files: Map<string, Uint8Array> };
  const newDir = (): Dir => ({ dirs: new Map(), files: new Map() });
  const tree = newDir();
  const dirAt = (segments: string[]) => {
    let node = tree;
    for (const s of segments) {
      if (node.files.has(s)) throw invalidArchive(`"${s}" is both a file and a folder`);
      let next = node.dirs.get(s);
      if (!next) node.dirs.set(s, (next = newDir()));
      node = next;
    }
    return node;
  };
  for (const d of opts.emptyDirs ?? []) dirAt(normaliseRelativePath(d).split('/'));
  for (const f of opts.files) {
    const parts = normaliseRelativePath(f.path).split('/');
    const name = parts.pop()!;
    const dir = dirAt(parts);
    if (dir.files.has(name) || dir.dirs.has(name)) throw invalidArchive(`duplicate entry "${f.path}"`);
    dir.files.set(name, f.data);
  }

  const base = { mtime, uid: 0, gid: 0, uname: '', gname: '' } satisfies Partial<TarHeader>;
  const entries: { header: TarHeader; body?: Uint8Array }[] = [];
  const walk = (node: Dir, prefix: string) => {
    entries.push({ header: { ...base, name: `${prefix}/`, type: 'directory', size: 0, mode: 0o755 } });
    const names = [...node.dirs.keys(), ...node.files.keys()].sort(byCodePoint);
    for (const name of names) {
      const sub = node.dirs.get(name);
      if (sub) walk(sub, `${prefix}/${name}`);
      else {
        const data = node.files.get(name)!;
        entries.push({ header: { ...base, name: `${prefix}/${name}`, type: 'file', size: data.byteLength, mode: 0o644 }, body: data });
      }
    }
  };
  walk(tree, root);
  const tar = await packTar(entries);
  return gzipSync(tar, { level: GZIP_LEVEL, mtime: 0 });
}

export interface UnpackLimits {
  maxEntries: number;
  maxFileBytes: number;
  maxTotalBytes: number;
}

export interface UnpackedTree {
  /** Files by normalised path ("v1__id/source/app/main.py"). */
  files: TreeFile[];
  /** Folders named in the archive, normalised, without trailing "/". */
  dirs: string[];
}

const TAR_BLOCK = 512;

/**
 * Safely reads a tar.gz (ours, GNU tar's or Python tarfile's). Rejects, with a 422 `invalid_archive`:
 * absolute paths, `..`, links, devices, FIFOs, duplicate entries, bad checksums, truncated or empty archives; and
 * with a 413 `archive_too_large` anything over the limits — checked while inflating, so a gzip bomb stops early.
 */
export async function unpackTree(gz: Uint8Array, limits: UnpackLimits): Promise<UnpackedTree> {
  // Headers: one block per entry plus PAX/long-name records (Python writes one per entry), and end padding.
  const tar = gunzipBounded(gz, limits.maxTotalBytes + limits.maxEntries * 8 * TAR_BLOCK + 20 * TAR_BLOCK);
  let raw;
  try {
    raw = await unpackTar(tar, { strict: true });
  } catch (err) {
    throw invalidArchive(`unreadable tar (${err instanceof Error ? err.message : String(err)})`);
  }
  if (raw.length === 0) throw invalidArchive('no entries');
  if (raw.length > limits.maxEntries) throw tooBig(`more than ${limits.maxEntries} entries`);
  const seen = new Set<string>();
  const filePaths = new Set<string>();
  const files: TreeFile[] = [];
  const dirs: string[] = [];
  let total = 0;
  for (const { header, data } of raw) {
    const type = header.type ?? 'file';
    if (type !== 'file' && type !== 'directory') throw invalidArchive(`entry ${JSON.stringify(header.name)} is a ${type}; only files and folders are allowed`);
    let path: string;
    try {
      path = normaliseRelativePath(type === 'directory' ? header.name.replace(/\/+$/, '') : header.name);
    } catch (err) {
      throw invalidArchive((err as Error).message);
    }
    if (seen.has(path)) throw invalidArchive(`duplicate entry ${JSON.stringify(path)}`);
    seen.add(path);
    if (type === 'directory') {
      dirs.push(path);
      continue;
    }
    const bytes = data ?? new Uint8Array(0);
    if (bytes.byteLength !== header.size) throw invalidArchive(`entry ${JSON.stringify(path)} is truncated`);
    if (bytes.byteLength > limits.maxFileBytes) throw tooBig(`entry ${JSON.stringify(path)} is over ${limits.maxFileBytes} bytes`);
    total += bytes.byteLength;
    if (total > limits.maxTotalBytes) throw tooBig(`contents are over ${limits.maxTotalBytes} bytes`);
    files.push({ path, data: bytes });
    filePaths.add(path);
  }
  if (tar.byteLength % TAR_BLOCK !== 0 || !endsWithZeroBlocks(tar)) throw invalidArchive('truncated tar (no end-of-archive marker)');
  for (const p of seen) {
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      const parent = p.slice(0, i);
      if (filePaths.has(parent)) throw invalidArchive(`${JSON.stringify(parent)} is both a file and a folder`);
    }
  }
  return { files, dirs };
}

/** A tar ends with two zero blocks; one cut at an entry boundary does not. */
function endsWithZeroBlocks(tar: Uint8Array): boolean {
  if (tar.byteLength < 2 * TAR_BLOCK) return false;
  for (let i = tar.byteLength - 2 * TAR_BLOCK; i < tar.byteLength; i++) if (tar[i] !== 0) return false;
  return true;
}

const tooBig = (message: string) => new AppError(ErrorCode.ArchiveTooLarge, 413, `archive too large: ${message}`);

/**
 * Inflates gzip data with the platform's zlib (it checks the CRC and length trailer), stopping as soon as the
 * output passes `maxBytes`, so a bomb never fills memory.
 */
function gunzipBounded(gz: Uint8Array, maxBytes: number): Uint8Array {
  if (gz.byteLength < 18 || gz[0] !== 0x1f || gz[1] !== 0x8b) throw invalidArchive('not gzip data');
  try {
    return new Uint8Array(gunzipSync(gz, { maxOutputLength: maxBytes }));
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooBig(`inflates to more than ${maxBytes} bytes`);
    throw invalidArchive(`bad gzip data (${err instanceof Error ? err.message : String(err)})`);
  }
}
