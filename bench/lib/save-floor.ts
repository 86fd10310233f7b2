import { randomUUID } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';

/**
 * The physical floor of a save (issue 15): what any server must do to make a generation durable, and nothing
 * else, in this process: the files, the manifest and the archive written raw to disk, each file and folder
 * fsynced (as our saves do, so the comparison is like for like), and one INSERT into an embedded PGlite on disk.
 * No HTTP, no validation, no hashing, no packing (the archive is given), no locks, no renames.
 */
export async function saveFloor(dir: string) {
  const db = new PGlite(join(dir, 'floor-db'));
  await db.exec(`create table generations (id uuid primary key, project_id uuid not null, version int not null, manifest jsonb not null, archive_sha256 text not null)`);
  const enc = new TextEncoder();
  return {
    async save(files: Record<string, string>, manifest: object, archive: { bytes: Uint8Array; sha256: string }, version: number): Promise<void> {
      const id = randomUUID();
      const root = join(dir, 'projects', id);
      const writes: [string, Uint8Array][] = [
        ...Object.entries(files).map(([path, text]) => [join(root, 'source', path), enc.encode(text)] as [string, Uint8Array]),
        [join(root, 'manifest.json'), enc.encode(JSON.stringify(manifest))],
        [`${root}.tar.gz`, archive.bytes],
      ];
      const folders = [...new Set(writes.map(([p]) => dirname(p)))];
      for (const f of folders) await mkdir(f, { recursive: true });
      const sync = async (path: string, data?: Uint8Array) => {
        const fh = await open(path, data ? 'w' : 'r');
        try {
          if (data) await fh.writeFile(data);
          await fh.sync();
        } finally {
          await fh.close();
        }
      };
      await Promise.all(writes.map(([p, d]) => sync(p, d)));
      await Promise.all(folders.map((f) => sync(f)));
      await db.query(`insert into generations values ($1, $2, $3, $4, $5)`, [id, randomUUID(), version, JSON.stringify(manifest), archive.sha256]);
    },
    close: () => db.close(),
  };
}
