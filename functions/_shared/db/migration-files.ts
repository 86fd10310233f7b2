import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Migration } from './migrate.ts';

const FILE = /^(\d{14})_([a-z0-9_]+)\.sql$/;

/** Reads `supabase/migrations/<version>_<name>.sql` files (the Supabase CLI's naming). */
export async function readMigrations(dir: string): Promise<Migration[]> {
  const out: Migration[] = [];
  for (const file of (await readdir(dir)).sort()) {
    const m = FILE.exec(file);
    if (!m) {
      if (file.endsWith('.sql')) throw new Error(`[migrate] ${file}: name must be <14-digit timestamp>_<snake_name>.sql`);
      continue;
    }
    out.push({ version: m[1]!, name: m[2]!, sql: await readFile(join(dir, file), 'utf8') });
  }
  return out;
}
