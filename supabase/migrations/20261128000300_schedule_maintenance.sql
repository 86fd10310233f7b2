-- Schedules housekeeping with pg_cron, as Supabase documents for scheduled Edge Functions: every 6 hours
-- (CLEANUP_INTERVAL_HOURS' default) pg_net POSTs to the storage-maintenance function, with the project URL and
-- the service key read from Vault at run time (secrets `project_url` and `codebegen_service_key`; see
-- docs/STORAGE_SETUP.md). A second, pure-SQL job keeps pg_cron's own run log from growing without end.
-- Where pg_cron is not available or not loaded (PGlite, a plain Postgres without it) this migration still
-- applies and schedules nothing; on Node, AUTO_CLEANUP_ENABLED runs the same maintenance in-process.
-- To change the interval: select cron.schedule('codebegen-storage-maintenance', '<cron>', command) from cron.job
-- where jobname = 'codebegen-storage-maintenance';   To stop: select cron.unschedule('codebegen-storage-maintenance');

do $migration$
begin
  if not exists (select 1 from pg_available_extensions where name = 'pg_cron') then
    raise notice 'pg_cron is not installed: maintenance is not scheduled here';
    return;
  end if;
  -- Not loaded (shared_preload_libraries), or not this cluster's cron database: skip, don't fail. (Reading
  -- shared_preload_libraries ourselves needs a superuser, which Supabase's migrating role is not.)
  begin
    create extension if not exists pg_cron;
  exception when others then
    raise notice 'pg_cron cannot be used in this database (%): maintenance is not scheduled here', sqlerrm;
    return;
  end;
  if exists (select 1 from pg_available_extensions where name = 'pg_net') then
    create extension if not exists pg_net;
  end if;

  perform cron.schedule(
    'codebegen-storage-maintenance',
    '0 */6 * * *',
    $job$
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url') || '/functions/v1/storage-maintenance',
        headers := jsonb_build_object(
          'Content-Type', 'application/json',
          'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = 'codebegen_service_key')
        ),
        body := jsonb_build_object('source', 'pg_cron'),
        timeout_milliseconds := 60000
      ) as request_id;
    $job$
  );

  perform cron.schedule(
    'codebegen-storage-cron-log-cleanup',
    '17 3 * * *',
    $job$ delete from cron.job_run_details where end_time < now() - interval '7 days' $job$
  );
end
$migration$;
