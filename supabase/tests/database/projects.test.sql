-- public.projects: who may read, create, change and delete a project.
-- Users read and create only their own projects; nobody but the service changes or deletes one;
-- anon gets nothing at all; service_role (bypassrls) manages every row.
begin;
create extension if not exists pgtap;
select plan(34);

-- ---------------------------------------------------------------------------------------------------------------
-- Schema: RLS on, the policies we expect, all `to authenticated`, all calling (select auth.uid()), owner_id indexed.
-- ---------------------------------------------------------------------------------------------------------------
select ok(
  (select relrowsecurity from pg_class where oid = 'public.projects'::regclass),
  'projects: row-level security is enabled'
);

select results_eq(
  $$ select policyname::text collate "default", cmd from pg_policies where schemaname = 'public' and tablename = 'projects' order by 1 $$,
  $$ values ('owners read their projects', 'SELECT'), ('users create projects they own', 'INSERT') $$,
  'projects: exactly one SELECT and one INSERT policy (no UPDATE or DELETE policy)'
);

select is_empty(
  $$ select policyname from pg_policies
     where schemaname = 'public' and tablename = 'projects' and roles <> '{authenticated}'::name[] $$,
  'projects: every policy applies to authenticated only'
);

select is_empty(
  $$ select policyname from pg_policies
     where schemaname = 'public' and tablename = 'projects'
       and (   concat_ws(' ', qual, with_check) !~ '\( SELECT auth\.uid\(\) AS uid\)'
            or replace(concat_ws(' ', qual, with_check), '( SELECT auth.uid() AS uid)', '') ~ 'auth\.uid\(\)') $$,
  'projects: every policy calls auth.uid() wrapped as (select auth.uid()), never bare'
);

select ok(
  exists (
    select 1 from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
    where i.indrelid = 'public.projects'::regclass and a.attname = 'owner_id'
  ),
  'projects: owner_id (the policy column) leads an index'
);

select table_privs_are('public', 'projects', 'anon', array[]::text[], 'projects: anon holds no privilege');
select table_privs_are('public', 'projects', 'authenticated', array['SELECT', 'INSERT'],
  'projects: authenticated may only SELECT and INSERT (no UPDATE, no DELETE)');
select table_privs_are('public', 'projects', 'service_role', array['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
  'projects: service_role may SELECT, INSERT, UPDATE, DELETE');

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as the owner role (postgres): Alice owns two projects, Bob one.
--   alice 11111111-…  projects aaaaaaaa-…-0001, aaaaaaaa-…-0002
--   bob   22222222-…  project  bbbbbbbb-…-0001
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111'),
  ('aaaaaaaa-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222');

-- ---------------------------------------------------------------------------------------------------------------
-- Alice, the owner
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.projects order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000001'::uuid), ('aaaaaaaa-0000-0000-0000-000000000002'::uuid) $$,
  'owner: select returns her own projects and only those'
);

select results_eq(
  $$ insert into public.projects (id, owner_id)
     values ('aaaaaaaa-0000-0000-0000-000000000003', '11111111-1111-1111-1111-111111111111') returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000003'::uuid) $$,
  'owner: insert of a project she owns is allowed'
);

select results_eq(
  $$ select count(*)::int from public.projects $$,
  array[3],
  'owner: the new project is visible to her'
);

select throws_ok(
  $$ update public.projects set created_at = now() - interval '1 day' where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'owner: update of her own project is refused (no UPDATE privilege)'
);

select throws_ok(
  $$ update public.projects set owner_id = '22222222-2222-2222-2222-222222222222' where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'owner: handing her project to another user is refused'
);

select throws_ok(
  $$ delete from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000002' $$,
  '42501', 'permission denied for table projects',
  'owner: delete of her own project is refused (only the service deletes projects)'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob, another user, facing Alice's projects
-- ---------------------------------------------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.projects $$,
  $$ values ('bbbbbbbb-0000-0000-0000-000000000001'::uuid) $$,
  'other user: select returns only his own project'
);

select is_empty(
  $$ select id from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  'other user: select of her project by id returns nothing'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id)
     values ('bbbbbbbb-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111') $$,
  '42501', 'new row violates row-level security policy for table "projects"',
  'other user: insert of a project in her name is refused by RLS'
);

select throws_ok(
  $$ update public.projects set owner_id = '22222222-2222-2222-2222-222222222222' where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'other user: update of her project is refused'
);

select throws_ok(
  $$ delete from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'other user: delete of her project is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- anon: no privilege at all
-- ---------------------------------------------------------------------------------------------------------------
reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
  $$ select id from public.projects $$,
  '42501', 'permission denied for table projects',
  'anon: select is refused'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id) values ('cccccccc-0000-0000-0000-000000000001', gen_random_uuid()) $$,
  '42501', 'permission denied for table projects',
  'anon: insert is refused'
);

select throws_ok(
  $$ update public.projects set created_at = now() $$,
  '42501', 'permission denied for table projects',
  'anon: update is refused'
);

select throws_ok(
  $$ delete from public.projects $$,
  '42501', 'permission denied for table projects',
  'anon: delete is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- As postgres: every refused statement above changed nothing (only Alice's allowed insert of -0003 landed).
-- ---------------------------------------------------------------------------------------------------------------
reset role;

select results_eq(
  $$ select id, owner_id from public.projects order by id $$,
  $$ values
       ('aaaaaaaa-0000-0000-0000-000000000001'::uuid, '11111111-1111-1111-1111-111111111111'::uuid),
       ('aaaaaaaa-0000-0000-0000-000000000002'::uuid, '11111111-1111-1111-1111-111111111111'::uuid),
       ('aaaaaaaa-0000-0000-0000-000000000003'::uuid, '11111111-1111-1111-1111-111111111111'::uuid),
       ('bbbbbbbb-0000-0000-0000-000000000001'::uuid, '22222222-2222-2222-2222-222222222222'::uuid) $$,
  'postgres: after the users and anon, the projects and their owners are exactly as seeded plus her new one'
);

select results_eq(
  $$ select count(*)::int from public.projects where created_at < now() - interval '1 hour' $$,
  array[0],
  'postgres: no created_at was moved by the refused updates'
);

-- ---------------------------------------------------------------------------------------------------------------
-- service_role: bypasses RLS and holds every privilege
-- ---------------------------------------------------------------------------------------------------------------
set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select results_eq(
  $$ select count(*)::int from public.projects $$,
  array[4],
  'service_role: select sees every project of every user'
);

select results_eq(
  $$ insert into public.projects (id, owner_id)
     values ('cccccccc-0000-0000-0000-000000000001', '33333333-3333-3333-3333-333333333333') returning owner_id $$,
  $$ values ('33333333-3333-3333-3333-333333333333'::uuid) $$,
  'service_role: insert of a project for any owner is allowed'
);

select results_eq(
  $$ update public.projects set owner_id = '22222222-2222-2222-2222-222222222222'
     where id = 'cccccccc-0000-0000-0000-000000000001' returning id $$,
  $$ values ('cccccccc-0000-0000-0000-000000000001'::uuid) $$,
  'service_role: update is allowed'
);

select results_eq(
  $$ delete from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000002' returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000002'::uuid) $$,
  'service_role: delete is allowed'
);

reset role;

select results_eq(
  $$ select id, owner_id from public.projects order by id $$,
  $$ values
       ('aaaaaaaa-0000-0000-0000-000000000001'::uuid, '11111111-1111-1111-1111-111111111111'::uuid),
       ('aaaaaaaa-0000-0000-0000-000000000003'::uuid, '11111111-1111-1111-1111-111111111111'::uuid),
       ('bbbbbbbb-0000-0000-0000-000000000001'::uuid, '22222222-2222-2222-2222-222222222222'::uuid),
       ('cccccccc-0000-0000-0000-000000000001'::uuid, '22222222-2222-2222-2222-222222222222'::uuid) $$,
  'postgres: the service''s insert, update and delete all took effect'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob again: the project the service handed to him is now his, and Alice's deleted one is gone for her.
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.projects order by id $$,
  $$ values ('bbbbbbbb-0000-0000-0000-000000000001'::uuid), ('cccccccc-0000-0000-0000-000000000001'::uuid) $$,
  'other user: sees the project the service assigned to him'
);

select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select id from public.projects order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000001'::uuid), ('aaaaaaaa-0000-0000-0000-000000000003'::uuid) $$,
  'owner: no longer sees the project the service deleted'
);

-- A user without claims (no sub) is nobody: sees nothing, creates nothing.
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);

select is_empty(
  $$ select id from public.projects $$,
  'authenticated without a sub: select returns nothing'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id) values ('dddddddd-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111') $$,
  '42501', 'new row violates row-level security policy for table "projects"',
  'authenticated without a sub: insert is refused by RLS'
);

reset role;

select * from finish();
rollback;
