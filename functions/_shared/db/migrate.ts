import type { Database } from './database.ts';

export interface Migration {
  /** The file name's timestamp prefix, e.g. "20261128000100": the order and the key. */
  version: string;
  name: string;
  sql: string;
}

/** An arbitrary constant: all runners, on every host, serialise on this advisory lock. */
const MIGRATION_LOCK = 7_414_212_310;

/**
 * Applies, once and in order, every migration not yet recorded — in the Supabase CLI's own table,
 * `supabase_migrations.schema_migrations`, so `supabase db push` and this runner agree on what is applied.
 * Each migration runs in its own transaction under a transaction-level advisory lock (works through poolers);
 * concurrent runners wait, then see the migration recorded and skip it.
 * `bootstrap` runs first wherever the database is not Supabase's (no `auth.users`): plain Postgres and PGlite.
 * Returns the versions it applied.
 */
export async function migrate(db: Database, migrations: readonly Migration[], bootstrap?: string): Promise<string[]> {
  const sorted = [...migrations].sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.version === sorted[i - 1]!.version) throw new Error(`[migrate] two migrations share version ${sorted[i]!.version}`);
  }
  await db.asOwner(async (tx) => {
    await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    // Supabase has auth.users (its auth service's table); plain Postgres gets the idempotent bootstrap every time.
    const [{ supabase } = { supabase: false }] = await tx.query<{ supabase: boolean }>(`select to_regclass('auth.users') is not null as supabase`);
    if (!supabase && bootstrap) await tx.exec(bootstrap);
    await tx.exec(`create schema if not exists supabase_migrations;
      create table if not exists supabase_migrations.schema_migrations (version text not null primary key, statements text[], name text);`);
  });
  const applied: string[] = [];
  for (const m of sorted) {
    const done = await db.asOwner(async (tx) => {
      await tx.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const rows = await tx.query('select 1 from supabase_migrations.schema_migrations where version = $1', [m.version]);
      if (rows.length > 0) return false;
      await tx.exec(m.sql);
      await tx.query('insert into supabase_migrations.schema_migrations (version, statements, name) values ($1, $2, $3)', [m.version, [m.sql], m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}
