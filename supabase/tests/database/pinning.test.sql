-- public.generations.pinned and retention's selection (migration 20261202000100).
-- `pinned` is the one column a user may write, and only on her own rows (a column grant plus an UPDATE policy);
-- codebegen_private.retention_candidates never selects a pinned generation or a project's newest, and is the
-- service's alone.
begin;
create extension if not exists pgtap;
select plan(32);

-- ---------------------------------------------------------------------------------------------------------------
-- Schema and privileges
-- ---------------------------------------------------------------------------------------------------------------
select has_column('public', 'generations', 'pinned', 'generations: has a pinned column');
select col_type_is('public', 'generations', 'pinned', 'boolean', 'generations.pinned is boolean');
select col_not_null('public', 'generations', 'pinned', 'generations.pinned is not null');
select col_default_is('public', 'generations', 'pinned', 'false', 'generations.pinned defaults to false');

select ok(has_column_privilege('authenticated', 'public.generations', 'pinned', 'UPDATE'), 'authenticated: may UPDATE the pinned column');
select is_empty(
  $$ select attname from pg_attribute
     where attrelid = 'public.generations'::regclass and attnum > 0 and not attisdropped and attname <> 'pinned'
       and has_column_privilege('authenticated', 'public.generations', attname::text, 'UPDATE') $$,
  'authenticated: may UPDATE no other column'
);
select ok(not has_column_privilege('anon', 'public.generations', 'pinned', 'UPDATE'), 'anon: may not UPDATE pinned');
select ok(not has_table_privilege('authenticated', 'public.generations', 'UPDATE'), 'authenticated: no table-wide UPDATE');

select policy_cmd_is('public', 'generations', 'owners pin their generations', 'update', 'the pin policy is an UPDATE policy');
select policy_roles_are('public', 'generations', 'owners pin their generations', array['authenticated'], 'the pin policy applies to authenticated only');
select is(
  (select qual from pg_policies where schemaname = 'public' and tablename = 'generations' and policyname = 'owners pin their generations'),
  '(owner_id = ( SELECT auth.uid() AS uid))',
  'the pin policy: own rows only, with (select auth.uid())'
);

select has_function('codebegen_private', 'retention_candidates', array['integer', 'timestamp with time zone'], 'retention_candidates(integer, timestamptz) exists');
select ok(not has_function_privilege('authenticated', 'codebegen_private.retention_candidates(integer, timestamptz)', 'execute'), 'authenticated: cannot run retention_candidates');
select ok(not has_function_privilege('anon', 'codebegen_private.retention_candidates(integer, timestamptz)', 'execute'), 'anon: cannot run retention_candidates');
select ok(has_function_privilege('service_role', 'codebegen_private.retention_candidates(integer, timestamptz)', 'execute'), 'service_role: may run retention_candidates');

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as postgres: alice's project with v1..v4 (v1, v2 40 days old), bob's with v1 (40 days old).
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-0000000000b1', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-0000000000b1', '22222222-2222-2222-2222-222222222222');
insert into public.generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
    archive_sha256, content_sha256, manifest, storage_key, created_at)
select g.id, g.project_id, g.owner_id, g.version, 1, 10, 20, repeat('a', 64), repeat('b', 64), '{}'::jsonb,
       g.project_id::text || '/generations/v' || g.version::text || '__' || g.id::text || '.tar.gz', now() - g.age
from (values
  ('aaaaaaaa-0000-0000-0001-0000000000b1'::uuid, 'aaaaaaaa-0000-0000-0000-0000000000b1'::uuid, '11111111-1111-1111-1111-111111111111'::uuid, 1, interval '40 days'),
  ('aaaaaaaa-0000-0000-0001-0000000000b2', 'aaaaaaaa-0000-0000-0000-0000000000b1', '11111111-1111-1111-1111-111111111111', 2, interval '40 days'),
  ('aaaaaaaa-0000-0000-0001-0000000000b3', 'aaaaaaaa-0000-0000-0000-0000000000b1', '11111111-1111-1111-1111-111111111111', 3, interval '1 day'),
  ('aaaaaaaa-0000-0000-0001-0000000000b4', 'aaaaaaaa-0000-0000-0000-0000000000b1', '11111111-1111-1111-1111-111111111111', 4, interval '1 hour'),
  ('bbbbbbbb-0000-0000-0001-0000000000b1', 'bbbbbbbb-0000-0000-0000-0000000000b1', '22222222-2222-2222-2222-222222222222', 1, interval '40 days')
) as g (id, project_id, owner_id, version, age);

select is(
  (select bool_or(pinned) from public.generations),
  false,
  'a new generation is not pinned'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Alice pins her own, and nothing else
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ update public.generations set pinned = true where id = 'aaaaaaaa-0000-0000-0001-0000000000b1' returning id, pinned $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b1'::uuid, true) $$,
  'owner: pins her own generation'
);
select is_empty(
  $$ update public.generations set pinned = true where id = 'bbbbbbbb-0000-0000-0001-0000000000b1' returning id $$,
  'owner: a pin of another user''s generation touches nothing (RLS hides it)'
);
select throws_ok(
  $$ update public.generations set pinned = true, upload_status = 'uploaded' where id = 'aaaaaaaa-0000-0000-0001-0000000000b2' $$,
  '42501', 'permission denied for table generations',
  'owner: a pin that also sets upload_status is refused whole'
);
select throws_ok(
  $$ update public.generations set owner_id = '22222222-2222-2222-2222-222222222222' where id = 'aaaaaaaa-0000-0000-0001-0000000000b2' $$,
  '42501', 'permission denied for table generations',
  'owner: cannot change owner_id'
);
select throws_ok(
  $$ update public.generations set version = 9, storage_key = 'x' where id = 'aaaaaaaa-0000-0000-0001-0000000000b2' $$,
  '42501', 'permission denied for table generations',
  'owner: cannot change version or storage_key'
);
select throws_ok(
  $$ update public.generations set created_at = now() - interval '1 year' where id = 'aaaaaaaa-0000-0000-0001-0000000000b4' $$,
  '42501', 'permission denied for table generations',
  'owner: cannot age a generation (created_at) to get it removed, or make it young to keep it'
);

-- Bob, facing Alice's rows
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);
select is_empty(
  $$ update public.generations set pinned = false where project_id = 'aaaaaaaa-0000-0000-0000-0000000000b1' returning id $$,
  'other user: unpinning her generations touches nothing'
);
select throws_ok(
  $$ select * from codebegen_private.retention_candidates(1, null) $$,
  '42501', 'permission denied for schema codebegen_private',
  'a user cannot run the retention selection'
);

reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);
select throws_ok(
  $$ update public.generations set pinned = true $$,
  '42501', 'permission denied for table generations',
  'anon: cannot pin'
);

reset role;
select results_eq(
  $$ select id, pinned from public.generations where pinned order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b1'::uuid, true) $$,
  'postgres: exactly her v1 is pinned'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Retention's selection (as service_role, as maintenance runs it)
-- ---------------------------------------------------------------------------------------------------------------
set local role service_role;

select results_eq(
  $$ select generation_id, reasons from codebegen_private.retention_candidates(2, null) $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b2'::uuid, array['keep_last']) $$,
  'keep last 2: her v2 only (v1 pinned; v3, v4 the newest two; bob''s v1 his project''s newest)'
);
select results_eq(
  $$ select generation_id, reasons from codebegen_private.retention_candidates(1, null) $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b2'::uuid, array['keep_last']), ('aaaaaaaa-0000-0000-0001-0000000000b3'::uuid, array['keep_last']) $$,
  'keep last 1: her v2 and v3, oldest first'
);
select results_eq(
  $$ select generation_id, reasons from codebegen_private.retention_candidates(null, now() - interval '30 days') $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b2'::uuid, array['max_age']) $$,
  'older than 30 days: her v2 only (v1 pinned, bob''s old v1 his newest)'
);
select results_eq(
  $$ select generation_id, reasons from codebegen_private.retention_candidates(2, now() - interval '30 days') $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000b2'::uuid, array['keep_last', 'max_age']) $$,
  'both rules: each selects on its own, reasons name both'
);
select is_empty(
  $$ select * from codebegen_private.retention_candidates(null, null) $$,
  'no rule: nothing selected'
);
select is_empty(
  $$ select * from codebegen_private.retention_candidates(1, now() + interval '1 day')
     where generation_id in ('aaaaaaaa-0000-0000-0001-0000000000b1', 'aaaaaaaa-0000-0000-0001-0000000000b4', 'bbbbbbbb-0000-0000-0001-0000000000b1') $$,
  'the harshest policy still never selects a pinned generation or a project''s newest'
);

reset role;
select * from finish();
rollback;
