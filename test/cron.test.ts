import { readFileSync } from 'node:fs';
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

  it('schedules maintenance every 6 hours, the outbox drain every minute, and a daily cron-log cleanup', async () => {
    const jobs = await sql`select jobname, schedule from cron.job where jobname like 'codebegen-storage-%' order by jobname`;
    expect(jobs.map((j) => [j.jobname, j.schedule])).toEqual([
      ['codebegen-storage-cron-log-cleanup', '17 3 * * *'],
      ['codebegen-storage-drain', '* * * * *'],
      ['codebegen-storage-maintenance', '0 */6 * * *'],
    ]);
  });

  it('calls storage-maintenance/drain only when an outbox row is due: not when empty, leased or backing off', async () => {
    await sql`insert into vault.decrypted_secrets values ('project_url', 'https://ref.supabase.test'), ('codebegen_service_key', 'sb_secret_from_vault')
              on conflict (name) do update set decrypted_secret = excluded.decrypted_secret`;
    const [job] = await sql`select command from cron.job where jobname = 'codebegen-storage-drain'`;
    const run = async () => {
      await sql`truncate net._test_requests`;
      await sql.unsafe(job!.command as string);
      return sql`select url, headers, body, timeout_milliseconds from net._test_requests`;
    };
    await sql`delete from codebegen_private.upload_outbox`;
    expect(await run()).toHaveLength(0);

    const [project, generation] = [crypto.randomUUID(), crypto.randomUUID()];
    await sql`insert into public.projects (id, owner_id) values (${project}, ${crypto.randomUUID()})`;
    await sql`insert into public.generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes, archive_sha256, content_sha256, manifest, storage_key, upload_status)
              select ${generation}, id, owner_id, 1, 1, 1, 1, repeat('a', 64), repeat('b', 64), '{}', id::text || '/generations/v1__' || ${generation} || '.tar.gz', 'pending' from public.projects where id = ${project}`;
    await sql`insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256, next_attempt_at) values (${generation}, '\\x00', repeat('a', 64), now() + interval '1 minute')`;
    expect(await run()).toHaveLength(0); // backing off
    await sql`update codebegen_private.upload_outbox set next_attempt_at = now(), lease_owner = 'x', lease_expires_at = now() + interval '5 minutes'`;
    expect(await run()).toHaveLength(0); // a drainer holds it
    await sql`update codebegen_private.upload_outbox set lease_expires_at = now() - interval '1 second'`;
    const sent = await run(); // the lease expired: due
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      url: 'https://ref.supabase.test/functions/v1/storage-maintenance/drain',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sb_secret_from_vault' },
      body: { source: 'pg_cron' },
      timeout_milliseconds: 150000,
    });
    await sql`delete from public.generations where id = ${generation}`;
    // the outbox row went with its generation, but its delete left a tombstone: due, so the drain is called
    expect(await run()).toHaveLength(1);
    await sql`update codebegen_private.pending_deletions set next_attempt_at = now() + interval '1 minute'`;
    expect(await run()).toHaveLength(0); // backing off
    await sql`delete from codebegen_private.pending_deletions`;
    expect(await run()).toHaveLength(0); // nothing to do
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

  it('grants postgres the cron schema as Supabase documents, leaves pg_net alone where it is absent, and re-runs cleanly', async () => {
    const recorded = await sql`select version from supabase_migrations.schema_migrations where version in ('20261201000500', '20261201000600') order by version`;
    expect(recorded.map((r) => r.version)).toEqual(['20261201000500', '20261201000600']);
    const [can] = await sql`select has_schema_privilege('postgres', 'cron', 'USAGE') as usage,
                                   has_table_privilege('postgres', 'cron.job_run_details', 'SELECT, DELETE') as run_log`;
    expect(can).toEqual({ usage: true, run_log: true });
    expect(await sql`select 1 from pg_extension where extname = 'pg_net'`).toHaveLength(0);
    // both are idempotent: applying them again (as a second runner might) changes nothing and fails nothing
    for (const file of ['20261201000500_pg_net_in_extensions_schema.sql', '20261201000600_grant_cron_schema.sql']) {
      await sql.unsafe(readFileSync(`supabase/migrations/${file}`, 'utf8'));
    }
  });
});
