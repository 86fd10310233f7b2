-- pg_net belongs in schema `extensions`, where Supabase installs it (Database -> Extensions) and where its Security
-- Advisor expects it (lint 0014 extension_in_public). 20261128000300 created it with no schema, which puts it in the
-- first schema of the search path: `public`. pg_net is not relocatable (`alter extension ... set schema` is refused),
-- so it is dropped and created again `with schema extensions`. Its functions keep their names (`net.http_post`, in
-- the schema `net` it makes for them), so the cron jobs, which call it by name, need no change; what is lost is only
-- what pg_net held in flight: queued requests and its responses of the last ~6 hours (the jobs post again at their
-- next run). Never cascades: if anything depends on pg_net, this only says so and leaves it where it is.
-- Skipped where pg_net is not installed (PGlite, plain PostgreSQL), is already outside `public`, or where schema
-- `extensions` does not exist (not Supabase).

do $migration$
declare
  installed_in name;
begin
  select n.nspname into installed_in
    from pg_extension e join pg_namespace n on n.oid = e.extnamespace
   where e.extname = 'pg_net';
  if installed_in is distinct from 'public' or not exists (select 1 from pg_namespace where nspname = 'extensions') then
    return;
  end if;
  begin
    drop extension pg_net;
    create extension pg_net with schema extensions;
  exception when others then
    -- The block's changes are undone: pg_net stays in public and keeps working.
    raise notice 'pg_net stays in schema public (%): move it by hand with drop extension pg_net; create extension pg_net with schema extensions;', sqlerrm;
  end;
end
$migration$;
