import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { migrate, type Migration } from '../functions/_shared/db/migrate.ts';
import { readMigrations } from '../functions/_shared/db/migration-files.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';

// The migration runner on real embedded Postgres (PGlite). One database carries the real migrations and then
// synthetic ones (each under its own versions, far after the real ones); a second, fresh one shows the bootstrap
// is skipped where auth.uid() already exists. The tests in this file run in order and build on each other.

const BOOTSTRAP = readFileSync('supabase/bootstrap/plain-postgres.sql', 'utf8');
const MIGRATIONS_DIR = 'supabase/migrations';

let db: Database;
let real: Migration[];

beforeAll(async () => {
  db = createDatabase(await openPGlite());
  real = await readMigrations(MIGRATIONS_DIR);
});
afterAll(async () => {
  await db?.close();
});

const q = <T = Record<string, unknown>>(sql: string, params?: unknown[]) => db.asOwner((tx) => tx.query<T>(sql, params));
const recorded = async () => (await q<{ version: string }>('select version from supabase_migrations.schema_migrations order by version')).map((r) => r.version);
const tableExists = async (name: string) => (await q<{ t: string | null }>('select to_regclass($1)::text as t', [name]))[0]!.t !== null;
const roles = async (d: Database) =>
  (await d.asOwner((tx) => tx.query<{ rolname: string }>(`select rolname from pg_roles where rolname in ('anon', 'authenticated', 'service_role') order by rolname`))).map((r) => r.rolname);

/** A synthetic migration. */
const mig = (version: string, name: string, sql: string): Migration => ({ version, name, sql });

describe('readMigrations', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'codebegen-migrations-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d);
    return d;
  };

  it('reads the real migrations: every .sql file, in version order, byte for byte', () => {
    const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort();
    expect(real.map((m) => `${m.version}_${m.name}.sql`)).toEqual(files);
    expect(real[0]!.name).toBe('projects_and_generations');
    for (const m of real) expect(m.sql).toBe(readFileSync(join(MIGRATIONS_DIR, `${m.version}_${m.name}.sql`), 'utf8'));
  });

  it('reads <14 digits>_<snake_name>.sql in version order and ignores files that are not .sql', async () => {
    const d = fresh('good');
    writeFileSync(join(d, '20260102000000_second_one.sql'), 'select 2;');
    writeFileSync(join(d, '20260101000000_first.sql'), 'select 1;');
    writeFileSync(join(d, '20260103000000_third_3.sql'), '-- 3\nselect 3;');
    writeFileSync(join(d, 'README.md'), '# not a migration');
    writeFileSync(join(d, 'notes.txt'), 'x');
    writeFileSync(join(d, '20260104000000_backup.sql.bak'), 'drop table everything;');
    writeFileSync(join(d, '.gitkeep'), '');
    mkdirSync(join(d, 'seeds'));
    expect(await readMigrations(d)).toEqual([
      { version: '20260101000000', name: 'first', sql: 'select 1;' },
      { version: '20260102000000', name: 'second_one', sql: 'select 2;' },
      { version: '20260103000000', name: 'third_3', sql: '-- 3\nselect 3;' },
    ]);
  });

  it('an empty folder gives no migrations; a missing one is an error', async () => {
    expect(await readMigrations(fresh('empty'))).toEqual([]);
    await expect(readMigrations(join(dir, 'does-not-exist'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each([
    'first.sql',
    '2026010100000_short.sql',
    '202601010000000_long.sql',
    '20260101000000-dash.sql',
    '20260101000000_Upper.sql',
    '20260101000000_kebab-name.sql',
    '20260101000000_.sql',
    '20260101000000.sql',
    '20260101000000_two words.sql',
  ])('rejects a badly named migration %j', async (bad) => {
    const d = fresh(`bad-${Math.random().toString(36).slice(2)}`);
    writeFileSync(join(d, '20260101000001_fine.sql'), 'select 1;');
    writeFileSync(join(d, bad), 'select 1;');
    await expect(readMigrations(d)).rejects.toThrow(/name must be <14-digit timestamp>_<snake_name>\.sql/);
  });
});

describe('migrate() on PGlite', () => {
  it('starts from a bare database', async () => {
    expect((await q<{ missing: boolean }>(`select to_regprocedure('auth.uid()') is null as missing`))[0]!.missing).toBe(true);
    expect(await roles(db)).toEqual([]);
    expect(await tableExists('supabase_migrations.schema_migrations')).toBe(false);
  });

  it('applies the bootstrap and every migration once, and records them', async () => {
    const applied = await migrate(db, real, BOOTSTRAP);
    expect(applied).toEqual(real.map((m) => m.version));
    expect(await roles(db)).toEqual(['anon', 'authenticated', 'service_role']);
    const fns = await q<{ f: string | null }>(`select to_regprocedure('auth.uid()')::text as f union all select to_regprocedure('auth.role()')::text union all select to_regprocedure('auth.jwt()')::text`);
    expect(fns.map((r) => r.f)).toEqual(['auth.uid()', 'auth.role()', 'auth.jwt()']);
    expect(await tableExists('public.projects')).toBe(true);
    expect(await tableExists('public.generations')).toBe(true);
    const rows = await q<{ version: string; name: string; statements: string[] }>('select version, name, statements from supabase_migrations.schema_migrations');
    expect(rows).toEqual(real.map((m) => ({ version: m.version, name: m.name, statements: [m.sql] })));
  });

  it('a second run applies nothing and changes nothing', async () => {
    await q(`insert into public.projects (id, owner_id) values ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002')`);
    expect(await migrate(db, real, BOOTSTRAP)).toEqual([]);
    expect(await migrate(db, await readMigrations(MIGRATIONS_DIR), BOOTSTRAP)).toEqual([]);
    expect(await recorded()).toEqual(real.map((m) => m.version));
    // the data is still there: nothing was dropped or re-created
    expect(await q('select id from public.projects')).toHaveLength(1);
    await q('delete from public.projects');
  });

  it('makes RLS enabled on projects and generations', async () => {
    const rows = await q<{ relname: string; relrowsecurity: boolean }>(
      `select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'public' and c.relname in ('projects', 'generations') order by c.relname`,
    );
    expect(rows).toEqual([
      { relname: 'generations', relrowsecurity: true },
      { relname: 'projects', relrowsecurity: true },
    ]);
  });

  it('every policy is `to authenticated` and calls auth.uid() only as (select auth.uid())', async () => {
    const policies = await q<{ tablename: string; policyname: string; roles: string[] | string; cmd: string; qual: string | null; with_check: string | null }>(
      `select tablename, policyname, roles, cmd, qual, with_check from pg_policies where schemaname = 'public' order by tablename, cmd, policyname`,
    );
    expect(policies.map((p) => `${p.tablename}:${p.cmd}`)).toEqual([
      'generations:DELETE',
      'generations:INSERT',
      'generations:SELECT',
      'generations:UPDATE', // pinning only: users hold UPDATE on the `pinned` column and no other
      'projects:INSERT',
      'projects:SELECT',
    ]);
    for (const p of policies) {
      const roleList = Array.isArray(p.roles) ? p.roles : p.roles.replace(/^\{|\}$/g, '').split(',');
      expect(roleList, p.policyname).toEqual(['authenticated']);
      const exprs = [p.qual, p.with_check].filter((e): e is string => e !== null);
      expect(exprs.length, p.policyname).toBeGreaterThan(0);
      // SELECT/DELETE/UPDATE filter with USING (an UPDATE policy's USING checks the new row too); INSERT checks with WITH CHECK
      if (p.cmd === 'INSERT') expect([p.qual, typeof p.with_check], p.policyname).toEqual([null, 'string']);
      else expect([typeof p.qual, p.with_check], p.policyname).toEqual(['string', null]);
      for (const e of exprs) {
        const calls = e.match(/auth\.uid\(\)/g) ?? [];
        const wrapped = e.match(/\(\s*SELECT auth\.uid\(\) AS uid\)/g) ?? [];
        expect(calls.length, `${p.policyname}: ${e}`).toBeGreaterThan(0);
        expect(wrapped.length, `${p.policyname}: ${e}`).toBe(calls.length);
        expect(e, p.policyname).toMatch(/owner_id = \( SELECT auth\.uid\(\) AS uid\)/);
      }
    }
  });

  it('two concurrent runs on the same database both succeed and apply each migration exactly once', async () => {
    await q('create table public.mig_log (seq serial primary key, version text not null)');
    const batch = ['29990101000001', '29990101000002', '29990101000003'].map((v) =>
      // not idempotent on purpose: a second application would fail on the create table
      mig(v, `concurrent_${v.slice(-1)}`, `create table public.concurrent_${v.slice(-1)} (id int); insert into public.mig_log (version) values ('${v}');`),
    );
    const [a, b] = await Promise.all([migrate(db, batch, BOOTSTRAP), migrate(db, [...batch].reverse(), BOOTSTRAP)]);
    expect([...a!, ...b!].sort()).toEqual(batch.map((m) => m.version));
    const log = await q<{ version: string }>('select version from public.mig_log order by seq');
    expect(log.map((r) => r.version)).toEqual(batch.map((m) => m.version));
    expect(await recorded()).toEqual([...real.map((m) => m.version), ...batch.map((m) => m.version)]);
    // and a third run, also concurrent with nothing left to do
    expect(await Promise.all([migrate(db, batch), migrate(db, batch)])).toEqual([[], []]);
  });

  it('applies migrations in version order even when given out of order', async () => {
    await q('truncate public.mig_log');
    // each depends on the previous one: out of order they would fail
    const m1 = mig('29990201000001', 'order_a', `create table public.order_t (a int); insert into public.mig_log (version) values ('29990201000001');`);
    const m2 = mig('29990201000002', 'order_b', `alter table public.order_t add column b int; insert into public.mig_log (version) values ('29990201000002');`);
    const m3 = mig('29990201000010', 'order_c', `insert into public.order_t (a, b) values (1, 2); insert into public.mig_log (version) values ('29990201000010');`);
    expect(await migrate(db, [m3, m1, m2])).toEqual(['29990201000001', '29990201000002', '29990201000010']);
    expect((await q<{ version: string }>('select version from public.mig_log order by seq')).map((r) => r.version)).toEqual([
      '29990201000001',
      '29990201000002',
      '29990201000010',
    ]);
    expect(await q('select a, b from public.order_t')).toEqual([{ a: 1, b: 2 }]);
  });

  it('rejects duplicate versions before touching the database', async () => {
    const before = await recorded();
    const dup = [
      mig('29990301000001', 'dup_a', 'create table public.dup_a (id int);'),
      mig('29990301000002', 'other', 'create table public.dup_other (id int);'),
      mig('29990301000001', 'dup_b', 'create table public.dup_b (id int);'),
    ];
    await expect(migrate(db, dup, BOOTSTRAP)).rejects.toThrow(/two migrations share version 29990301000001/);
    expect(await tableExists('public.dup_a')).toBe(false);
    expect(await tableExists('public.dup_b')).toBe(false);
    expect(await tableExists('public.dup_other')).toBe(false);
    expect(await recorded()).toEqual(before);
  });

  it('a migration with a SQL error rolls back entirely and is not recorded; a later run retries it', async () => {
    const ok = mig('29990401000001', 'fail_ok', 'create table public.fail_ok (id int);');
    const broken = mig('29990401000002', 'fail_bad', `create table public.fail_bad (id int); insert into public.fail_bad values (1); select 1 / 0;`);
    const after = mig('29990401000003', 'fail_after', 'create table public.fail_after (id int);');

    await expect(migrate(db, [ok, broken, after])).rejects.toThrow(/division by zero/);
    expect(await tableExists('public.fail_ok')).toBe(true);
    expect(await tableExists('public.fail_bad')).toBe(false);
    // the runner stops at the failure: the later migration is not applied out of order
    expect(await tableExists('public.fail_after')).toBe(false);
    let versions = await recorded();
    expect(versions).toContain(ok.version);
    expect(versions).not.toContain(broken.version);
    expect(versions).not.toContain(after.version);

    // a syntax error too
    const syntax = { ...broken, sql: 'create table public.fail_bad (id int); creat table nope (x int);' };
    await expect(migrate(db, [ok, syntax, after])).rejects.toThrow(/syntax error/);
    expect(await tableExists('public.fail_bad')).toBe(false);

    // the database is still usable, and the fixed migration is retried
    const fixed = { ...broken, sql: 'create table public.fail_bad (id int); insert into public.fail_bad values (1);' };
    expect(await migrate(db, [ok, fixed, after])).toEqual([broken.version, after.version]);
    expect(await q('select id from public.fail_bad')).toEqual([{ id: 1 }]);
    expect(await tableExists('public.fail_after')).toBe(true);
    versions = await recorded();
    expect(versions.filter((v) => v.startsWith('29990401'))).toEqual([ok.version, broken.version, after.version]);
    const [row] = await q<{ statements: string[]; name: string }>('select statements, name from supabase_migrations.schema_migrations where version = $1', [broken.version]);
    expect(row).toEqual({ statements: [fixed.sql], name: 'fail_bad' });
  });
});

describe('bootstrap', () => {
  let bare: Database;
  beforeAll(async () => {
    bare = createDatabase(await openPGlite());
  });
  afterAll(async () => {
    await bare?.close();
  });

  const missing = async (sig: string) => (await bare.asOwner((tx) => tx.query<{ m: boolean }>('select to_regprocedure($1) is null as m', [sig])))[0]!.m;

  it('is not run when none is given', async () => {
    expect(await migrate(bare, [mig('20000101000001', 'plain', 'create table public.plain (id int);')])).toEqual(['20000101000001']);
    expect(await roles(bare)).toEqual([]);
    expect(await missing('auth.uid()')).toBe(true);
  });

  it('is skipped on Supabase (auth.users exists), even where auth.uid() is its own', async () => {
    await bare.asOwner((tx) =>
      tx.exec(`create schema auth;
        create table auth.users (id uuid primary key);
        create function auth.uid() returns uuid language sql stable as $$ select '11111111-1111-4111-8111-111111111111'::uuid $$;`),
    );
    const applied = await migrate(bare, [mig('20000101000002', 'on_supabase', 'create table public.on_supabase (id int);')], BOOTSTRAP);
    expect(applied).toEqual(['20000101000002']);
    // none of the bootstrap happened: no roles, no auth.role()/auth.jwt(), and auth.uid() is still the stub
    expect(await roles(bare)).toEqual([]);
    expect(await missing('auth.role()')).toBe(true);
    expect(await missing('auth.jwt()')).toBe(true);
    expect(await bare.asOwner((tx) => tx.query(`select auth.uid()::text as uid`))).toEqual([{ uid: '11111111-1111-4111-8111-111111111111' }]);
    expect((await bare.asOwner((tx) => tx.query<{ version: string }>('select version from supabase_migrations.schema_migrations order by version'))).map((r) => r.version)).toEqual([
      '20000101000001',
      '20000101000002',
    ]);
  });
});
