import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { migrateAll } from './helpers/context.ts';

// pg_cron on real PostgreSQL 15: the migrations schedule maintenance, and the job's command, run against
// test-only stand-ins for pg_net and Vault (which have no Debian packages), sends the request Supabase would.

const url = inject('cronDatabaseUrl');
if (!url) console.warn('\n!!! test/cron.test.ts SKIPPED: no throwaway PostgreSQL cluster with pg_cron (install postgresql-15-cron) !!!\n');

const SHIMS = `
  create schema if not exists net;
  create table if not exists net._test_requests (id bigserial primary key, url text, headers jsonb, body jsonb, timeout_milliseconds int);
  create or replace function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
      headers jsonb default '{}', timeout_milliseconds int default 5000) returns bigint
    language sql as $$
      insert into net._test_requests (url, headers, body, timeout_milliseconds) values (url, headers, body, timeout_milliseconds) returning id
    $$;
  create schema if not exists vault;
  create table if not exists vault.decrypted_secrets (name text primary key, decrypted_secret text);
`;

describe.skipIf(!url)('pg_cron maintenance schedule (PostgreSQL 15)', () => {
  let db: Database;
  let sql: ReturnType<typeof postgres>;

  beforeAll(async () => {
    db = createDatabase(openPostgres(url, { max: 2 }));
    await migrateAll(db);
    sql = postgres(url, { max: 1, onnotice: () => {} });
    await sql.unsafe(SHIMS);
  });
  afterAll(async () => {
    await sql?.end();
    await db?.close();
  });

  it('schedules maintenance every 6 hours and a daily cron-log cleanup', async () => {
    const jobs = await sql`select jobname, schedule from cron.job where jobname like 'codebegen-storage-%' order by jobname`;
    expect(jobs.map((j) => [j.jobname, j.schedule])).toEqual([
      ['codebegen-storage-cron-log-cleanup', '17 3 * * *'],
      ['codebegen-storage-maintenance', '0 */6 * * *'],
    ]);
  });

  it("runs a command that POSTs to the storage-maintenance function with the Vault's URL and service key", async () => {
    await sql`insert into vault.decrypted_secrets values ('project_url', 'https://ref.supabase.test'), ('codebegen_service_key', 'sb_secret_from_vault')
              on conflict (name) do update set decrypted_secret = excluded.decrypted_secret`;
    await sql`truncate net._test_requests`;
    const [job] = await sql`select command from cron.job where jobname = 'codebegen-storage-maintenance'`;
    await sql.unsafe(job!.command as string);
    const sent = await sql`select url, headers, body, timeout_milliseconds from net._test_requests`;
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      url: 'https://ref.supabase.test/functions/v1/storage-maintenance',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sb_secret_from_vault' },
      body: { source: 'pg_cron' },
      timeout_milliseconds: 60000,
    });
  });

  it('the cleanup job is plain SQL that runs', async () => {
    const [job] = await sql`select command from cron.job where jobname = 'codebegen-storage-cron-log-cleanup'`;
    await sql.unsafe(job!.command as string);
  });
});
