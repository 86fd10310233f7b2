import { createHash, randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createDatabase } from '../../functions/_shared/db/database.ts';
import { openPGlite } from '../../functions/_shared/db/pglite-driver.ts';
import { migrateAll } from '../../test/helpers/context.ts';

// Creating an embedded database (PGlite's initdb, then our migrations) costs seconds of CPU, more than a quick
// benchmark's whole measurement; every server a benchmark starts would pay it. So one migrated data folder is
// made once and kept in .cache/bench/, named after what shapes it (the migrations, the bootstrap, PGlite's
// version), and each server or runner starts from a copy. Nothing measured happens at start-up.

/** What the template is made of: a new migration or another PGlite makes another template. */
function schemaKey(): string {
  const hash = createHash('sha256');
  for (const name of readdirSync('supabase/migrations').sort()) hash.update(name).update(readFileSync(join('supabase/migrations', name)));
  hash.update(readFileSync('supabase/bootstrap/plain-postgres.sql'));
  hash.update(readFileSync('node_modules/@electric-sql/pglite/package.json'));
  return hash.digest('hex').slice(0, 16);
}

/** The template's folder, made if missing, once per process (servers often start side by side). Run from the repository's root. */
let made: Promise<string> | undefined;
const template = () => (made ??= makeTemplate());

async function makeTemplate(): Promise<string> {
  const dir = join('.cache', 'bench', `pglite-${schemaKey()}`);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  const scratch = `${dir}.${process.pid}.${randomUUID()}.tmp`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const db = createDatabase(await openPGlite(scratch));
  await migrateAll(db);
  await db.close();
  try {
    renameSync(scratch, dir);
  } catch {
    rmSync(scratch, { recursive: true, force: true }); // another benchmark made it meanwhile
  }
  // Templates of older schemas are of no further use.
  for (const name of readdirSync(dirname(dir))) {
    if (/^pglite-[0-9a-f]{16}$/.test(name) && name !== basename(dir)) rmSync(join(dirname(dir), name), { recursive: true, force: true });
  }
  return dir;
}

/** Fills `path` (not there yet) with a migrated embedded database, ready for PGLITE_DATA_DIR or openPGlite. */
export async function seedPGlite(path: string): Promise<string> {
  cpSync(await template(), path, { recursive: true });
  return path;
}
