-- public.generations: who may read, save, change and delete a generation.
-- Users read, save (in the API's shape only) and delete their own generations; nobody but the service changes
-- one (upload status is the service's to record) apart from its owner's pin (`pinned`, see pinning.test.sql);
-- anon gets nothing; service_role manages every row.
begin;
create extension if not exists pgtap;
select plan(39);

-- A generation row as the API writes it. Its columns are the table's first 13, in order, so
-- `insert into public.generations select * from pg_temp.new_generation(...)` fills them and leaves the rest
-- to their defaults. `storage_key` defaults to the derived key {project_id}/generations/v{version}__{id}.tar.gz.
create function pg_temp.new_generation(
  gen_id uuid, proj_id uuid, owner uuid, ver int,
  status text default 'local', attempts int default 0, key text default null
) returns table (
  id uuid, project_id uuid, owner_id uuid, version int, file_count int, total_size_bytes bigint,
  archive_size_bytes bigint, archive_sha256 text, content_sha256 text, manifest jsonb, storage_key text,
  upload_status text, upload_attempts int
)
language sql immutable
as $$
  select gen_id, proj_id, owner, ver, 1, 10::bigint, 20::bigint, repeat('a', 64), repeat('b', 64),
         '{"files": []}'::jsonb,
         coalesce(key, proj_id::text || '/generations/v' || ver::text || '__' || gen_id::text || '.tar.gz'),
         status, attempts
$$;

-- ---------------------------------------------------------------------------------------------------------------
-- Schema: RLS on, the policies we expect, all `to authenticated`, all calling (select auth.uid()), keys indexed.
-- ---------------------------------------------------------------------------------------------------------------
select ok(
  (select relrowsecurity from pg_class where oid = 'public.generations'::regclass),
  'generations: row-level security is enabled'
);

select results_eq(
  $$ select policyname::text collate "default", cmd from pg_policies
     where schemaname = 'public' and tablename = 'generations' order by 1 $$,
  $$ values ('owners add generations to their projects', 'INSERT'),
            ('owners delete their generations', 'DELETE'),
            ('owners pin their generations', 'UPDATE'),
            ('owners read their generations', 'SELECT') $$,
  'generations: one SELECT, one INSERT, one DELETE policy, and one UPDATE policy (for the pinned column alone)'
);

select is_empty(
  $$ select policyname from pg_policies
     where schemaname = 'public' and tablename = 'generations' and roles <> '{authenticated}'::name[] $$,
  'generations: every policy applies to authenticated only'
);

select is_empty(
  $$ select policyname from pg_policies
     where schemaname = 'public' and tablename = 'generations'
       and (   concat_ws(' ', qual, with_check) !~ '\( SELECT auth\.uid\(\) AS uid\)'
            or replace(concat_ws(' ', qual, with_check), '( SELECT auth.uid() AS uid)', '') ~ 'auth\.uid\(\)') $$,
  'generations: every policy calls auth.uid() wrapped as (select auth.uid()), never bare'
);

select ok(
  exists (
    select 1 from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
    where i.indrelid = 'public.generations'::regclass and a.attname = 'owner_id'
  ),
  'generations: owner_id (the policy column) leads an index'
);

select ok(
  exists (
    select 1 from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
    where i.indrelid = 'public.generations'::regclass and a.attname = 'project_id'
  ),
  'generations: project_id (the foreign key and the listing column) leads an index'
);

select table_privs_are('public', 'generations', 'anon', array[]::text[], 'generations: anon holds no privilege');
select table_privs_are('public', 'generations', 'authenticated', array['SELECT', 'INSERT', 'DELETE'],
  'generations: authenticated may SELECT, INSERT and DELETE (no table-wide UPDATE: only the pinned column)');
select table_privs_are('public', 'generations', 'service_role', array['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
  'generations: service_role may SELECT, INSERT, UPDATE, DELETE');

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as the owner role (postgres):
--   alice 11111111-…  project aaaaaaaa-0000-0000-0000-000000000001 with generations v1 (…-0001-…01), v2 (…-0001-…02)
--   bob   22222222-…  project bbbbbbbb-0000-0000-0000-000000000001 with generation  v1 (…-0001-…01)
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222');
insert into public.generations select * from pg_temp.new_generation(
  'aaaaaaaa-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1);
insert into public.generations select * from pg_temp.new_generation(
  'aaaaaaaa-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 2);
insert into public.generations select * from pg_temp.new_generation(
  'bbbbbbbb-0000-0000-0001-000000000001', 'bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 1);

-- ---------------------------------------------------------------------------------------------------------------
-- Alice, the owner
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.generations order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000001'::uuid), ('aaaaaaaa-0000-0000-0001-000000000002'::uuid) $$,
  'owner: select returns her own generations and only those'
);

select results_eq(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000003', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 3)
     returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000003'::uuid) $$,
  'owner: insert of a generation (status local) into her project is allowed'
);

select results_eq(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000004', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 4,
       status => 'pending')
     returning upload_status $$,
  $$ values ('pending') $$,
  'owner: insert of a generation waiting for upload (status pending) is allowed'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000005', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 5,
       status => 'uploaded') $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'owner: insert claiming the upload already happened (status uploaded) is refused by RLS'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000005', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 5,
       attempts => 3) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'owner: insert with an upload history (upload_attempts > 0) is refused by RLS'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000005', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 5,
       key => 'bbbbbbbb-0000-0000-0000-000000000001/generations/v1__bbbbbbbb-0000-0000-0001-000000000001.tar.gz') $$,
  '23514', null,
  'owner: insert pointing storage_key at another project''s object is refused (check constraint)'
);

select throws_ok(
  $$ update public.generations set upload_status = 'uploaded' where id = 'aaaaaaaa-0000-0000-0001-000000000001' $$,
  '42501', 'permission denied for table generations',
  'owner: update of her own generation''s upload status is refused (no UPDATE privilege on it: it is the service''s)'
);

select results_eq(
  $$ delete from public.generations where id = 'aaaaaaaa-0000-0000-0001-000000000002' returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000002'::uuid) $$,
  'owner: delete of her own generation is allowed'
);

select results_eq(
  $$ select id from public.generations order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000001'::uuid), ('aaaaaaaa-0000-0000-0001-000000000003'::uuid),
            ('aaaaaaaa-0000-0000-0001-000000000004'::uuid) $$,
  'owner: she now sees v1, v3 and v4'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob, another user, facing Alice's generations
-- ---------------------------------------------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.generations $$,
  $$ values ('bbbbbbbb-0000-0000-0001-000000000001'::uuid) $$,
  'other user: select returns only his own generation'
);

select is_empty(
  $$ select id from public.generations where project_id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  'other user: select of her project''s generations returns nothing'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000009', 'aaaaaaaa-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 9) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'other user: insert into her project is refused by RLS'
);

select throws_ok(
  $$ update public.generations set upload_status = 'failed' where id = 'aaaaaaaa-0000-0000-0001-000000000001' $$,
  '42501', 'permission denied for table generations',
  'other user: update of her generation is refused'
);

select is_empty(
  $$ delete from public.generations where id = 'aaaaaaaa-0000-0000-0001-000000000001' returning id $$,
  'other user: delete of her generation by id deletes nothing (RLS hides it)'
);

select is_empty(
  $$ delete from public.generations where project_id = 'aaaaaaaa-0000-0000-0000-000000000001' returning id $$,
  'other user: delete of her whole project''s generations deletes nothing'
);

-- ---------------------------------------------------------------------------------------------------------------
-- anon: no privilege at all
-- ---------------------------------------------------------------------------------------------------------------
reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
  $$ select id from public.generations $$,
  '42501', 'permission denied for table generations',
  'anon: select is refused'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 9) $$,
  '42501', 'permission denied for table generations',
  'anon: insert is refused'
);

select throws_ok(
  $$ update public.generations set upload_status = 'failed' $$,
  '42501', 'permission denied for table generations',
  'anon: update is refused'
);

select throws_ok(
  $$ delete from public.generations $$,
  '42501', 'permission denied for table generations',
  'anon: delete is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- As postgres: the refused and hidden writes changed nothing (only Alice's inserts of v3, v4 and delete of v2 did).
-- ---------------------------------------------------------------------------------------------------------------
reset role;

select results_eq(
  $$ select id, upload_status, upload_attempts from public.generations order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000001'::uuid, 'local', 0),
            ('aaaaaaaa-0000-0000-0001-000000000003'::uuid, 'local', 0),
            ('aaaaaaaa-0000-0000-0001-000000000004'::uuid, 'pending', 0),
            ('bbbbbbbb-0000-0000-0001-000000000001'::uuid, 'local', 0) $$,
  'postgres: after the users and anon, exactly her v1, v3, v4 and his v1 remain, statuses untouched'
);

-- ---------------------------------------------------------------------------------------------------------------
-- service_role: bypasses RLS and holds every privilege
-- ---------------------------------------------------------------------------------------------------------------
set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select results_eq(
  $$ select count(*)::int from public.generations $$,
  array[4],
  'service_role: select sees every generation of every user'
);

select results_eq(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000002', 'bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 2,
       status => 'uploaded', attempts => 1)
     returning id $$,
  $$ values ('bbbbbbbb-0000-0000-0001-000000000002'::uuid) $$,
  'service_role: insert for any user, with an upload status, is allowed'
);

select results_eq(
  $$ update public.generations set upload_status = 'uploaded', upload_attempts = 1, uploaded_at = now()
     where id = 'aaaaaaaa-0000-0000-0001-000000000004' returning upload_status $$,
  $$ values ('uploaded') $$,
  'service_role: update (recording an upload) is allowed'
);

select results_eq(
  $$ delete from public.generations where id = 'aaaaaaaa-0000-0000-0001-000000000001' returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000001'::uuid) $$,
  'service_role: delete is allowed'
);

reset role;

select results_eq(
  $$ select id, upload_status from public.generations order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000003'::uuid, 'local'),
            ('aaaaaaaa-0000-0000-0001-000000000004'::uuid, 'uploaded'),
            ('bbbbbbbb-0000-0000-0001-000000000001'::uuid, 'local'),
            ('bbbbbbbb-0000-0000-0001-000000000002'::uuid, 'uploaded') $$,
  'postgres: the service''s insert, update and delete all took effect'
);

-- Alice sees the service's upload record on her generation, but still cannot see Bob's new one.
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select id, upload_status from public.generations order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-000000000003'::uuid, 'local'),
            ('aaaaaaaa-0000-0000-0001-000000000004'::uuid, 'uploaded') $$,
  'owner: sees the upload the service recorded, and only her own generations'
);

-- A user without claims (no sub) is nobody: sees nothing, saves nothing, deletes nothing.
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);

select is_empty(
  $$ select id from public.generations $$,
  'authenticated without a sub: select returns nothing'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000009', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 9) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'authenticated without a sub: insert is refused by RLS'
);

select is_empty(
  $$ delete from public.generations returning id $$,
  'authenticated without a sub: delete deletes nothing'
);

reset role;

select results_eq(
  $$ select count(*)::int from public.generations $$,
  array[4],
  'postgres: the claim-less user changed nothing'
);

select * from finish();
rollback;
