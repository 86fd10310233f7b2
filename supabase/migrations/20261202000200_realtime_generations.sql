-- Live upload status: public.generations joins the `supabase_realtime` publication, so a signed-in frontend
-- subscribed through supabase-js (`postgres_changes`) sees a save go `pending → uploaded` without polling.
-- - Who receives what is RLS's business: Realtime checks each INSERT and UPDATE against the subscriber's own SELECT
--   policy (as `authenticated`, with their JWT claims) and sends only columns the role may SELECT, so an owner gets
--   their own rows and nobody else's. A DELETE cannot be checked that way (the row is gone): with RLS on, Realtime
--   sends deletes with the primary key only.
-- - Replica identity stays DEFAULT (the primary key). FULL would write each old row, manifest included, to the WAL
--   on every upload-status change, and with RLS on Realtime still sends a deleted row's key only.
-- - Only where the publication exists. Supabase creates it in every project; supabase/bootstrap/plain-postgres.sql
--   creates it (empty) on plain Postgres and PGlite, as it stands in for Supabase's roles, so CI checks this path.
--   A publication FOR ALL TABLES already holds the table; a role that may not alter the publication gets a notice.

do $migration$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    raise notice 'no supabase_realtime publication here: generations are not published for Realtime';
    return;
  end if;
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime' and puballtables)
     or exists (select 1 from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'generations') then
    return;
  end if;
  begin
    alter publication supabase_realtime add table public.generations;
  exception when insufficient_privilege then
    raise notice 'cannot add public.generations to supabase_realtime here (%): run alter publication supabase_realtime add table public.generations; as the publication''s owner', sqlerrm;
  end;
end
$migration$;
