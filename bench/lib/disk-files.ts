import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { diskFile } from '../../functions/_shared/archive/disk-tree.ts';
import type { StreamedFile } from '../../functions/_shared/archive/tar-gz.ts';

/**
 * Every file under `dir` to pack from disk (paths relative to it); a symlink, or anything but a file or folder, is
 * an error. The benchmarks' stand-in for a folder on disk; the migration reads its folders with its own checks
 * (functions/_shared/migration/prepare-generation.ts).
 */
export async function diskFiles(dir: string, rel = ''): Promise<StreamedFile[]> {
  const entries = await readdir(join(dir, rel), { withFileTypes: true });
  const found = await Promise.all(
    entries.map(async (e) => {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) return diskFiles(dir, path);
      if (!e.isFile()) throw new Error(`[bench] ${JSON.stringify(path)} is neither a file nor a folder`);
      return [diskFile(path, join(dir, path), (await lstat(join(dir, path))).size)];
    }),
  );
  return found.flat();
}
