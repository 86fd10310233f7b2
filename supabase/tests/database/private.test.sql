-- codebegen_private: the upload outbox (archive bytes of saves not yet verified in the bucket) and the pending
-- deletions (tombstones of deletes whose copies are not all removed yet). Service only: a schema of its own (not
-- exposed by the Data API), no privileges for anon or authenticated, RLS on with no policy. A generation's outbox
-- row goes with it, and its delete — even its owner's own, through the Data API — leaves a tombstone.
begin;
create extension if not exists pgtap;
select plan(21);

select has_table('codebegen_private', 'upload_outbox', 'the upload outbox exists');
select ok(
  (select relrowsecurity from pg_class where oid = 'codebegen_private.upload_outbox'::regclass),
  'upload_outbox: row-level security is enabled'
);
select is_empty(
  $$ select policyname from pg_policies where schemaname = 'codebegen_private' $$,
  'upload_outbox: no policy at all (nobody but service_role, which bypasses RLS)'
);
select ok(not has_schema_privilege('authenticated', 'codebegen_private', 'usage'), 'authenticated: no usage on schema codebegen_private');
select ok(not has_schema_privilege('anon', 'codebegen_private', 'usage'), 'anon: no usage on schema codebegen_private');
select ok(has_schema_privilege('service_role', 'codebegen_private', 'usage'), 'service_role: usage on schema codebegen_private');
select ok(
  not has_table_privilege('authenticated', 'codebegen_private.upload_outbox', 'select, insert, update, delete'),
  'authenticated: no privilege on upload_outbox'
);
select ok(
  not has_table_privilege('anon', 'codebegen_private.upload_outbox', 'select, insert, update, delete'),
  'anon: no privilege on upload_outbox'
);
select ok(
  has_table_privilege('service_role', 'codebegen_private.upload_outbox', 'select')
    and has_table_privilege('service_role', 'codebegen_private.upload_outbox', 'insert')
    and has_table_privilege('service_role', 'codebegen_private.upload_outbox', 'update')
    and has_table_privilege('service_role', 'codebegen_private.upload_outbox', 'delete'),
  'service_role: select, insert, update and delete on upload_outbox'
);
select is(
  (select attstorage::text from pg_attribute where attrelid = 'codebegen_private.upload_outbox'::regclass and attname = 'archive'),
  'e',
  'upload_outbox.archive is stored out of line without compression (gzip does not compress again)'
);
select has_index('codebegen_private', 'upload_outbox', 'upload_outbox_due_idx', 'the drain''s due scan is indexed');
select ok(
  (select relrowsecurity from pg_class where oid = 'codebegen_private.pending_deletions'::regclass),
  'pending_deletions: row-level security is enabled'
);
select ok(
  not has_table_privilege('authenticated', 'codebegen_private.pending_deletions', 'select, insert, update, delete')
    and not has_table_privilege('anon', 'codebegen_private.pending_deletions', 'select, insert, update, delete'),
  'anon and authenticated: no privilege on pending_deletions'
);
select ok(
  not has_function_privilege('authenticated', 'codebegen_private.record_deletion()', 'execute'),
  'authenticated: cannot call the tombstone trigger function directly'
);

-- Fixture: alice's generation with its archive staged.
insert into public.projects (id, owner_id) values ('aaaaaaaa-0000-0000-0000-0000000000f1', '11111111-1111-1111-1111-111111111111');
insert into public.generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
    archive_sha256, content_sha256, manifest, storage_key, upload_status)
  values ('aaaaaaaa-0000-0000-0001-0000000000f1', 'aaaaaaaa-0000-0000-0000-0000000000f1', '11111111-1111-1111-1111-111111111111',
    1, 1, 1, 1, repeat('a', 64), repeat('b', 64), '{}',
    'aaaaaaaa-0000-0000-0000-0000000000f1/generations/v1__aaaaaaaa-0000-0000-0001-0000000000f1.tar.gz', 'pending');
insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256)
  values ('aaaaaaaa-0000-0000-0001-0000000000f1', '\x1f8b', repeat('a', 64));

select throws_ok(
  $$ insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256) values (gen_random_uuid(), '\x00', repeat('a', 64)) $$,
  '23503', null,
  'an outbox row needs its generation'
);

-- The owner, as the Data API would run her: she cannot see or touch the outbox, even for her own generation.
set local role authenticated;
select set_config('request.jwt.claims', '{"sub":"11111111-1111-1111-1111-111111111111","role":"authenticated"}', true);
select throws_ok($$ select * from codebegen_private.upload_outbox $$, '42501', null, 'owner: cannot read the outbox');
select throws_ok(
  $$ insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256) values ('aaaaaaaa-0000-0000-0001-0000000000f1', '\x00', repeat('c', 64)) $$,
  '42501', null,
  'owner: cannot write into the outbox'
);
-- ...but deleting her generation (which RLS allows) takes its outbox row with it.
select results_eq(
  $$ delete from public.generations where id = 'aaaaaaaa-0000-0000-0001-0000000000f1' returning id $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000f1'::uuid) $$,
  'owner: deletes her generation'
);
select throws_ok($$ select * from codebegen_private.pending_deletions $$, '42501', null, 'owner: cannot read the tombstones');
reset role;
select is_empty(
  $$ select 1 from codebegen_private.upload_outbox where generation_id = 'aaaaaaaa-0000-0000-0001-0000000000f1' $$,
  'the deleted generation''s outbox row is gone with it'
);
select results_eq(
  $$ select generation_id, project_id, version, storage_key from codebegen_private.pending_deletions
     where generation_id = 'aaaaaaaa-0000-0000-0001-0000000000f1' $$,
  $$ values ('aaaaaaaa-0000-0000-0001-0000000000f1'::uuid, 'aaaaaaaa-0000-0000-0000-0000000000f1'::uuid, 1,
             'aaaaaaaa-0000-0000-0000-0000000000f1/generations/v1__aaaaaaaa-0000-0000-0001-0000000000f1.tar.gz') $$,
  'her delete left a tombstone naming the object to remove'
);

select * from finish();
rollback;
