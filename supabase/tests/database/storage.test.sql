-- The private bucket `codebegen-projects` and who may touch its objects through storage.objects.
-- A user reads only the archives under {project_id}/... of projects they own; users write nothing (uploads,
-- overwrites and deletes are the service's); anon sees nothing; service_role (bypassrls) sees and writes all.
begin;
create extension if not exists pgtap;
select plan(25);

-- ---------------------------------------------------------------------------------------------------------------
-- The bucket and the policies
-- ---------------------------------------------------------------------------------------------------------------
select results_eq(
  $$ select id, name, public, allowed_mime_types from storage.buckets where id = 'codebegen-projects' $$,
  $$ values ('codebegen-projects', 'codebegen-projects', false, array['application/gzip']) $$,
  'bucket codebegen-projects exists, is private and allows only application/gzip'
);

select ok(
  (select file_size_limit between 52428800 and 104857600 from storage.buckets where id = 'codebegen-projects'),
  'bucket codebegen-projects has a file size limit above the 50 MB generation limit (archives carry some overhead)'
);

select ok(
  (select relrowsecurity from pg_class where oid = 'storage.objects'::regclass),
  'storage.objects: row-level security is enabled'
);

select results_eq(
  $$ select cmd, roles from pg_policies
     where schemaname = 'storage' and tablename = 'objects' and policyname like 'codebegen%' $$,
  $$ values ('SELECT', '{authenticated}'::name[]) $$,
  'storage.objects: our only policy is a SELECT policy for authenticated (no insert, update or delete policy)'
);

select is_empty(
  $$ select policyname from pg_policies
     where schemaname = 'storage' and tablename = 'objects' and policyname like 'codebegen%'
       and (   concat_ws(' ', qual, with_check) !~ '\( SELECT auth\.uid\(\) AS uid\)'
            or replace(concat_ws(' ', qual, with_check), '( SELECT auth.uid() AS uid)', '') ~ 'auth\.uid\(\)') $$,
  'storage.objects: our policy calls auth.uid() wrapped as (select auth.uid()), never bare'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as postgres:
--   Alice (11111111-…) owns project aaaaaaaa-…-0001, Bob (22222222-…) owns bbbbbbbb-…-0001.
--   In codebegen-projects: two archives of Alice's project, one of Bob's, one with no folder, and one that only
--   mentions Alice's project id further down its path. In another bucket: an object under Alice's project id.
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222');

insert into storage.buckets (id, name, public) values ('some-other-bucket', 'some-other-bucket', false);

insert into storage.objects (id, bucket_id, name) values
  ('0b000000-0000-0000-0000-0000000000a1', 'codebegen-projects',
     'aaaaaaaa-0000-0000-0000-000000000001/generations/v1__aaaaaaaa-0000-0000-0001-000000000001.tar.gz'),
  ('0b000000-0000-0000-0000-0000000000a2', 'codebegen-projects',
     'aaaaaaaa-0000-0000-0000-000000000001/generations/v2__aaaaaaaa-0000-0000-0001-000000000002.tar.gz'),
  ('0b000000-0000-0000-0000-0000000000b1', 'codebegen-projects',
     'bbbbbbbb-0000-0000-0000-000000000001/generations/v1__bbbbbbbb-0000-0000-0001-000000000001.tar.gz'),
  ('0b000000-0000-0000-0000-0000000000c1', 'codebegen-projects', 'stray.tar.gz'),
  ('0b000000-0000-0000-0000-0000000000c2', 'codebegen-projects',
     'elsewhere/aaaaaaaa-0000-0000-0000-000000000001/v1.tar.gz'),
  ('0b000000-0000-0000-0000-0000000000d1', 'some-other-bucket',
     'aaaaaaaa-0000-0000-0000-000000000001/generations/v1__aaaaaaaa-0000-0000-0001-000000000001.tar.gz');

-- ---------------------------------------------------------------------------------------------------------------
-- Alice
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select id from storage.objects order by id $$,
  $$ values ('0b000000-0000-0000-0000-0000000000a1'::uuid), ('0b000000-0000-0000-0000-0000000000a2'::uuid) $$,
  'Alice: select returns exactly the archives under her project''s folder in codebegen-projects'
);

select is_empty(
  $$ select id from storage.objects where bucket_id = 'some-other-bucket' $$,
  'Alice: an object under her project id in another bucket stays hidden'
);

select throws_ok(
  $$ insert into storage.objects (bucket_id, name)
     values ('codebegen-projects', 'aaaaaaaa-0000-0000-0000-000000000001/generations/v3__x.tar.gz') $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'Alice: uploading into her own project''s folder is refused (uploads are the service''s)'
);

select throws_ok(
  $$ insert into storage.objects (bucket_id, name)
     values ('codebegen-projects', 'bbbbbbbb-0000-0000-0000-000000000001/generations/v9__x.tar.gz') $$,
  '42501', 'new row violates row-level security policy for table "objects"',
  'Alice: uploading into Bob''s project folder is refused'
);

select is_empty(
  $$ update storage.objects set metadata = '{"tampered": true}' where id = '0b000000-0000-0000-0000-0000000000a1' returning id $$,
  'Alice: overwriting her own archive''s row changes nothing'
);

select is_empty(
  $$ update storage.objects set name = 'aaaaaaaa-0000-0000-0000-000000000001/stolen.tar.gz'
     where id = '0b000000-0000-0000-0000-0000000000b1' returning id $$,
  'Alice: renaming Bob''s archive into her folder changes nothing'
);

select is_empty(
  $$ delete from storage.objects where id = '0b000000-0000-0000-0000-0000000000a2' returning id $$,
  'Alice: deleting her own archive deletes nothing'
);

select is_empty(
  $$ delete from storage.objects returning id $$,
  'Alice: deleting every object deletes nothing'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob, and Carol (33333333-…, owns no project)
-- ---------------------------------------------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select results_eq(
  $$ select id from storage.objects $$,
  $$ values ('0b000000-0000-0000-0000-0000000000b1'::uuid) $$,
  'Bob: select returns exactly his project''s archive'
);

select is_empty(
  $$ select id from storage.objects where name like 'aaaaaaaa-0000-0000-0000-000000000001/%' $$,
  'Bob: Alice''s archives stay hidden'
);

select is_empty(
  $$ delete from storage.objects where id = '0b000000-0000-0000-0000-0000000000a1' returning id $$,
  'Bob: deleting Alice''s archive deletes nothing'
);

select is_empty(
  $$ update storage.objects set metadata = '{}' where id = '0b000000-0000-0000-0000-0000000000a1' returning id $$,
  'Bob: overwriting Alice''s archive''s row changes nothing'
);

select set_config('request.jwt.claims', '{"sub":"33333333-3333-3333-3333-333333333333","role":"authenticated"}', true);

select is_empty(
  $$ select id from storage.objects $$,
  'Carol (no project): select returns nothing'
);

-- ---------------------------------------------------------------------------------------------------------------
-- anon. The plain-Postgres bootstrap grants anon nothing on storage.objects (permission denied); on Supabase anon
-- holds the grant and RLS (no policy for anon) hides every row. Either way anon sees nothing.
-- ---------------------------------------------------------------------------------------------------------------
reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select case
  when has_table_privilege('anon', 'storage.objects', 'select')
    then is_empty($$ select id from storage.objects $$, 'anon: sees no object')
  else throws_ok($$ select id from storage.objects $$, '42501', null, 'anon: sees no object (no privilege at all)')
end;

select throws_ok(
  $$ insert into storage.objects (bucket_id, name)
     values ('codebegen-projects', 'aaaaaaaa-0000-0000-0000-000000000001/generations/v3__x.tar.gz') $$,
  '42501', null,
  'anon: uploading is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- As postgres: nothing the users or anon tried changed a row.
-- ---------------------------------------------------------------------------------------------------------------
reset role;

select results_eq(
  $$ select id, bucket_id, name, metadata from storage.objects order by id $$,
  $$ values
       ('0b000000-0000-0000-0000-0000000000a1'::uuid, 'codebegen-projects',
          'aaaaaaaa-0000-0000-0000-000000000001/generations/v1__aaaaaaaa-0000-0000-0001-000000000001.tar.gz', null::jsonb),
       ('0b000000-0000-0000-0000-0000000000a2'::uuid, 'codebegen-projects',
          'aaaaaaaa-0000-0000-0000-000000000001/generations/v2__aaaaaaaa-0000-0000-0001-000000000002.tar.gz', null::jsonb),
       ('0b000000-0000-0000-0000-0000000000b1'::uuid, 'codebegen-projects',
          'bbbbbbbb-0000-0000-0000-000000000001/generations/v1__bbbbbbbb-0000-0000-0001-000000000001.tar.gz', null::jsonb),
       ('0b000000-0000-0000-0000-0000000000c1'::uuid, 'codebegen-projects', 'stray.tar.gz', null::jsonb),
       ('0b000000-0000-0000-0000-0000000000c2'::uuid, 'codebegen-projects',
          'elsewhere/aaaaaaaa-0000-0000-0000-000000000001/v1.tar.gz', null::jsonb),
       ('0b000000-0000-0000-0000-0000000000d1'::uuid, 'some-other-bucket',
          'aaaaaaaa-0000-0000-0000-000000000001/generations/v1__aaaaaaaa-0000-0000-0001-000000000001.tar.gz', null::jsonb) $$,
  'postgres: all six objects are exactly as seeded (no insert, update or delete landed)'
);

-- ---------------------------------------------------------------------------------------------------------------
-- service_role
-- ---------------------------------------------------------------------------------------------------------------
set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select results_eq(
  $$ select count(*)::int from storage.objects where id::text like '0b000000-%' $$,
  array[6],
  'service_role: select sees every object, in every bucket'
);

select lives_ok(
  $$ insert into storage.objects (id, bucket_id, name)
     values ('0b000000-0000-0000-0000-0000000000a3', 'codebegen-projects',
             'aaaaaaaa-0000-0000-0000-000000000001/generations/v3__aaaaaaaa-0000-0000-0001-000000000003.tar.gz') $$,
  'service_role: uploading an archive works'
);

select results_eq(
  $$ delete from storage.objects where id = '0b000000-0000-0000-0000-0000000000c1' returning id $$,
  $$ values ('0b000000-0000-0000-0000-0000000000c1'::uuid) $$,
  'service_role: deleting an object works'
);

-- Alice now sees the archive the service uploaded into her project.
reset role;
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select count(*)::int from storage.objects $$,
  array[3],
  'Alice: sees the archive the service uploaded into her project'
);

reset role;

select * from finish();
rollback;
