-- public.projects.last_version: the highest version a project ever had, so versions are never reused after deletes.
-- Only the trigger on generations insert moves it (security definer), for a user's insert (RLS) and the service's
-- alike; users still cannot update a project, nor create one with the counter moved, nor call the function.
begin;
create extension if not exists pgtap;
select plan(24);

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

-- ---------------------------------------------------------------------------------------------------------------
-- Schema: the column, the trigger, and a definer function with an empty search_path that no user may call.
-- ---------------------------------------------------------------------------------------------------------------
select col_type_is('public', 'projects', 'last_version', 'integer', 'projects.last_version is an integer');
select col_not_null('public', 'projects', 'last_version', 'projects.last_version is not null');
select col_default_is('public', 'projects', 'last_version', '0', 'projects.last_version starts at 0');
select has_trigger('public', 'generations', 'generations_bump_project_last_version', 'generations: the counter trigger exists');
select is_definer('public', 'bump_project_last_version', array[]::name[], 'the counter function is security definer');
select is(
  (select proconfig from pg_proc where oid = 'public.bump_project_last_version()'::regprocedure),
  array['search_path=""'],
  'the counter function runs with an empty search_path'
);
select ok(
  not has_function_privilege('authenticated', 'public.bump_project_last_version()', 'execute')
  and not has_function_privilege('anon', 'public.bump_project_last_version()', 'execute'),
  'neither authenticated nor anon may execute the counter function'
);
select table_privs_are('public', 'projects', 'authenticated', array['SELECT', 'INSERT'],
  'projects: authenticated still may only SELECT and INSERT (no UPDATE)');

-- ---------------------------------------------------------------------------------------------------------------
-- Seed, as postgres: Alice (11111111-…) owns project aaaaaaaa-…-0001, Bob (22222222-…) owns bbbbbbbb-…-0001.
-- ---------------------------------------------------------------------------------------------------------------
insert into public.projects (id, owner_id) values
  ('aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111'),
  ('bbbbbbbb-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222');

-- ---------------------------------------------------------------------------------------------------------------
-- Alice: her inserts move her counter; she cannot move it herself
-- ---------------------------------------------------------------------------------------------------------------
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);

select results_eq(
  $$ select last_version from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  array[0],
  'owner: a new project''s counter is 0'
);

select lives_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000001', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 1);
     insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000002', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 2) $$,
  'owner: inserts v1 and v2 of her project'
);

select results_eq(
  $$ select last_version from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  array[2],
  'owner: her inserts moved the counter to 2, though she holds no UPDATE privilege'
);

select results_eq(
  $$ delete from public.generations where id = 'aaaaaaaa-0000-0000-0001-000000000002' returning version $$,
  array[2],
  'owner: deletes v2'
);

select results_eq(
  $$ select last_version from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  array[2],
  'owner: the delete left the counter at 2 (v2 is never handed out again)'
);

select lives_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000005', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 5) $$,
  'owner: inserts v5'
);

select results_eq(
  $$ select last_version from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  array[5],
  'owner: a higher version moves the counter up to it'
);

select throws_ok(
  $$ update public.projects set last_version = 0 where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'owner: winding her counter back directly is refused (no UPDATE privilege)'
);

select throws_ok(
  $$ insert into public.projects (id, owner_id, last_version)
     values ('aaaaaaaa-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111', 100) $$,
  '42501', 'new row violates row-level security policy for table "projects"',
  'owner: creating a project with its counter already moved is refused by RLS'
);

select throws_ok(
  $$ select public.bump_project_last_version() $$,
  '42501', null,
  'owner: calling the counter function herself is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- Bob: cannot move Alice's counter by inserting into her project
-- ---------------------------------------------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"22222222-2222-2222-2222-222222222222","role":"authenticated"}', true);

select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'bbbbbbbb-0000-0000-0001-000000000099', 'aaaaaaaa-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 99) $$,
  '42501', 'new row violates row-level security policy for table "generations"',
  'other user: insert into her project is refused by RLS'
);

select throws_ok(
  $$ update public.projects set last_version = 99 where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  '42501', 'permission denied for table projects',
  'other user: update of her counter is refused'
);

-- ---------------------------------------------------------------------------------------------------------------
-- service_role: its inserts move the counter the same way; an older version registered later leaves it alone
-- ---------------------------------------------------------------------------------------------------------------
reset role;
set local role service_role;
select set_config('request.jwt.claims', '{"role":"service_role"}', true);

select lives_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000007', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 7);
     insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000003', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 3) $$,
  'service_role: inserts v7, then an older v3 (a legacy import)'
);

reset role;

select results_eq(
  $$ select id, last_version from public.projects order by id $$,
  $$ values ('aaaaaaaa-0000-0000-0000-000000000001'::uuid, 7), ('bbbbbbbb-0000-0000-0000-000000000001'::uuid, 0) $$,
  'postgres: her counter is 7 (only ever up), his untouched at 0'
);

-- A failed insert moves nothing: the trigger's update rolls back with the row.
select throws_ok(
  $$ insert into public.generations select * from pg_temp.new_generation(
       'aaaaaaaa-0000-0000-0001-000000000077', 'aaaaaaaa-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 7) $$,
  '23505', null,
  'postgres: a second v7 is refused (unique per project)'
);

select results_eq(
  $$ select last_version from public.projects where id = 'aaaaaaaa-0000-0000-0000-000000000001' $$,
  array[7],
  'postgres: the refused insert left the counter at 7'
);

select * from finish();
rollback;
