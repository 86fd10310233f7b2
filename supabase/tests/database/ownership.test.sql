-- A user can never save into a project another user owns, and a generation's owner is always its project's owner:
-- RLS refuses users (42501), and the composite foreign key generations (project_id, owner_id) -> projects (id,
-- owner_id) refuses everyone else, the service role included (23503). Versions are unique per project (23505).
begin;
create extension if not exists pgtap;
select plan(23);

-- A generation row as the API writes it (the table's first 11 columns, in order; the rest take their defaults).
create function pg_temp.new_generation(gen_id uuid, proj_id uuid, owner uuid, ver int)
returns table (
  id uuid, project_id uuid, owner_id uuid, version int, file_count int, total_size_bytes bigint,
  archive_size_bytes bigint, archive_sha256 text, content_sha256 text, manifest jsonb, storage_key text
)
language sql immutable
as $$
  select gen_id, proj_id, owner, ver, 1, 10::bigint, 20::bigint, repeat('a', 64), repeat('b', 64), '{}'::jsonb,
         proj_id::text || '/generations/v' || ver::text || '__' || gen_id::text || '.tar.gz'
$$;

select fk_ok(
  'public', 'generations', array['project_id', 'owner_id'],
  'public', 'projects', array['id', 'owner_id'],
  'generations (project_id, owner_id) references projects (id, owner_id)'
);

select col_is_unique('public', 'generations', array['project_id', 'version'], 'version is unique per project');

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as postgres: Alice (11111111-…) owns project aaaaaaaa-…-0001 with v1; Bob (22222222-…) owns bbbbbbbb-…-0001.
-- Carol (33333333-…) owns nothing.
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222');
insert into public.generations select * from pg_temp.new_generation(
  'aaaaaaaa-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob tries to save into Alice's project, whatever owner_id he writes
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 2) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'user: saving into another user''s project as himself (owner_id = his id) is refused'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 2) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'user: saving into another user''s project in that user''s name (owner_id = project owner) is refused'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000003', 'aaaaaaaa-0000-0000-0000-000000000001', '33333333-3333-3333-3333-333333333333', 2) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'user: saving into another user''s project under a third owner_id is refused'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000004', 'bbbbbbbb-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'user: saving into his own project in another user''s name is refused'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000005', 'dddddddd-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 1) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'user: saving into a project that does not exist is refused'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id) values ('bbbbbbbb-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111') $$,
  '42501', 'new row violates row-level security policy for table "projects"',
  'user: creating a project that claims another owner is refused'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id) values ('aaaaaaaa-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222') $$,
  '23505', null,
  'user: re-creating another user''s project id under his own name is refused (the id is taken)'
);

select results_eq(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000006', 'bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 1)
     returning id $$,
  $$ values ('bbbbbbbb-0000-0000-0001-000000000006'::uuid) $$,
  'user: saving into his own project as himself works (v1 may repeat across projects)'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Versions are unique per project
-- ---------------------------------------------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1) $$,
  '23505', 'duplicate key value violates unique constraint "generations_project_version_key"',
  'owner: saving a second v1 into her project is refused (23505)'
);

select lives_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 2) $$,
  'owner: saving v2 into her project works'
);

-- ---------------------------------------------------------------------------------------------------------------
-- The service role bypasses RLS, but not the composite foreign key
-- ---------------------------------------------------------------------------------------------------------------
reset role;
set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 3) $$,
  '23503', null,
  'service_role: filing a generation in Alice''s project under Bob is refused (23503)'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '33333333-3333-3333-3333-333333333333', 3) $$,
  '23503', null,
  'service_role: filing a generation in Alice''s project under a user with no project is refused (23503)'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000003', 'dddddddd-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1) $$,
  '23503', null,
  'service_role: filing a generation in a project that does not exist is refused (23503)'
);

select throws_ok(
  $$ update public.generations set owner_id = '22222222-2222-2222-2222-222222222222'
     where id = 'aaaaaaaa-0000-0000-0001-000000000001' $$,
  '23503', null,
  'service_role: re-assigning a generation to a user who does not own its project is refused (23503)'
);

select throws_ok(
  $$ update public.generations
        set project_id = 'bbbbbbbb-0000-0000-0000-000000000001', version = 9,
            storage_key = 'bbbbbbbb-0000-0000-0000-000000000001/generations/v9__aaaaaaaa-0000-0000-0001-000000000001.tar.gz'
      where id = 'aaaaaaaa-0000-0000-0001-000000000001' $$,
  '23503', null,
  'service_role: moving a generation into another owner''s project, keeping its owner, is refused (23503)'
);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000004', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 2) $$,
  '23505', 'duplicate key value violates unique constraint "generations_project_version_key"',
  'service_role: a duplicate version in a project is refused too (23505)'
);

select lives_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'cccccccc-0000-0000-0001-000000000005', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 3) $$,
  'service_role: filing a generation under the project''s own owner works'
);

-- Moving a whole project to another owner (a service-only operation) carries its generations along.
select lives_ok(
  $$ update public.projects set owner_id = '33333333-3333-3333-3333-333333333333' where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  'service_role: handing a project to another owner works'
);

reset role;

select results_eq(
  $$ select distinct owner_id from public.generations where project_id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  $$ values ('33333333-3333-3333-3333-333333333333'::uuid) $$,
  'postgres: the project''s generations followed it to the new owner (on update cascade)'
);

select results_eq(
  $$ select project_id, owner_id, count(*)::int from public.generations group by 1, 2 order by 1 $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000001'::uuid, '33333333-3333-3333-3333-333333333333'::uuid, 3),
            ('bbbbbbbb-0000-0000-0000-000000000001'::uuid, '22222222-2222-2222-2222-222222222222'::uuid, 1) $$,
  'postgres: every generation''s owner is its project''s owner; no refused row landed'
);

select is_empty(
  $$ select g.id from public.generations g join public.projects p on p.id = g.project_id where g.owner_id <> p.owner_id $$,
  'postgres: no generation has an owner other than its project''s'
);

select * from finish();
rollback;
