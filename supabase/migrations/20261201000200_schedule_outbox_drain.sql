-- The outbox's safety net on Supabase: every minute pg_cron asks the storage-maintenance function to drain the
-- upload outbox (and finish deletes whose copies are not all removed yet), through pg_net, but only when a row is
-- due (not leased, backoff over): an idle project costs no invocations. The save's own background upload is the fast path; this catches what it could not finish (Storage
-- down longer than the in-call retries, a worker recycled mid-upload). Same Vault secrets as the maintenance job.
-- Skipped where pg_cron cannot be used, like the maintenance schedule; on Node the retry timer drains instead.
-- To stop: select cron.unschedule('codebegen-storage-drain');

do $migration$
begin
  if not exists (select 1 from pg_available_extensions where name = 'pg_cron') then
    raise notice 'pg_cron is not installed: the outbox drain is not scheduled here';
    return;
  end if;
  begin
    create extension if not exists pg_cron;
  exception when others then
    raise notice 'pg_cron cannot be used in this database (%): the outbox drain is not scheduled here', sqlerrm;
    return;
  end;

  perform cron.schedule(
    'codebegen-storage-drain',
    '* * * * *',
    $job$
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url') || '/functions/v1/storage-maintenance/drain',
        headers := jsonb_build_object(
          'Content-Type', 'application/json',
          'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = 'codebegen_service_key')
        ),
        body := jsonb_build_object('source', 'pg_cron'),
        timeout_milliseconds := 150000
      ) as request_id
      where exists (
        select 1 from codebegen_private.upload_outbox
        where next_attempt_at <= now() and (lease_expires_at is null or lease_expires_at < now())
      ) or exists (
        select 1 from codebegen_private.pending_deletions where next_attempt_at <= now()
      );
    $job$
  );
end
$migration$;
