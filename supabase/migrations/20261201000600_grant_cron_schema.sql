-- Supabase's pg_cron install steps (docs: guides/cron/install) follow `create extension pg_cron` with
--   grant usage on schema cron to postgres;
--   grant all privileges on all tables in schema cron to postgres;
-- so that `postgres` (the role migrations and the SQL Editor run as) can read and manage cron.job and
-- cron.job_run_details, as STORAGE_SETUP §5 and our daily cron-log cleanup do. 20261128000300 created pg_cron without
-- them. Skipped where pg_cron is not installed (PGlite, a plain Postgres without it) or there is no role `postgres`;
-- a role that may not grant them gets a notice, not a failed migration.

do $migration$
begin
  if not exists (select 1 from pg_extension where extname = 'pg_cron')
     or not exists (select 1 from pg_roles where rolname = 'postgres') then
    return;
  end if;
  begin
    grant usage on schema cron to postgres;
    grant all privileges on all tables in schema cron to postgres;
  exception when insufficient_privilege then
    raise notice 'cannot grant schema cron to postgres here (%): run the two grants as the owner of pg_cron', sqlerrm;
  end;
end
$migration$;
