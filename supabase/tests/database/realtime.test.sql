-- Supabase Realtime (migration 20261202000200): public.generations is in the `supabase_realtime` publication, so a
-- frontend sees upload status change live; RLS (its SELECT policy) decides which subscriber receives which row.
-- On plain Postgres the bootstrap creates the publication as Supabase has it, so this holds on CI too.
begin;
create extension if not exists pgtap;
select plan(6);

select ok(
  exists (select 1 from pg_publication where pubname = 'supabase_realtime'),
  'the supabase_realtime publication exists'
);
select ok(
  exists (select 1 from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'generations'),
  'public.generations is published for Realtime'
);
select ok(
  (select pubinsert and pubupdate from pg_publication where pubname = 'supabase_realtime'),
  'the publication carries inserts and updates (a save, and its pending -> uploaded)'
);
select is_empty(
  $$ select tablename from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'codebegen_private' $$,
  'nothing of codebegen_private (archive bytes, tombstones) is published'
);
select is(
  (select relreplident::text from pg_class where oid = 'public.generations'::regclass),
  'd',
  'generations keeps the default replica identity (primary key): no full old rows, manifests included, in the WAL'
);
select ok(
  (select relrowsecurity from pg_class where oid = 'public.generations'::regclass)
    and has_table_privilege('authenticated', 'public.generations', 'SELECT'),
  'RLS is on and subscribers (authenticated) may SELECT: Realtime delivers each row to its owner alone'
);

select * from finish();
rollback;
