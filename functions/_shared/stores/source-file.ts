import { join } from 'node:path';
import { openRegularFile } from '../archive/disk-tree.ts';
import type { GenerationRef } from '../archive/generation-archive.ts';
import { sha256Hex, type FileDigest } from '../archive/manifest.ts';
import { normaliseRelativePath } from '../secure-path.ts';
import type { LocalStore } from './local-store.ts';

/** Not there, or not a file: what a folder that lacks the file looks like. */
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENOTREG', 'EISDIR']);

/**
 * One source file of a generation's folder in `store` (`.../v{n}__{id}/source/{path}`), if it is there with exactly
 * the bytes `expected` records (size, then sha256); undefined otherwise, so the caller turns to another copy.
 * The file itself is opened without following a symlink; what it holds is checked whatever led to it.
 */
export async function readVerifiedSourceFile(store: LocalStore, ref: GenerationRef, expected: FileDigest): Promise<Uint8Array | undefined> {
  const path = join(store.generationDir(ref), 'source', normaliseRelativePath(expected.path));
  let opened: Awaited<ReturnType<typeof openRegularFile>>;
  try {
    opened = await openRegularFile(path);
  } catch (err) {
    if (MISSING.has((err as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw err;
  }
  const { fh, size } = opened;
  try {
    if (size !== expected.size) return undefined;
    const data = new Uint8Array(size);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await fh.read(data, at, size - at, at);
      if (bytesRead === 0) return undefined; // shrank while read
      at += bytesRead;
    }
    return sha256Hex(data) === expected.sha256 ? data : undefined;
  } finally {
    await fh.close();
  }
}
