-- Deletes that cannot half-happen. Deleting a generation row (through our API, or directly through the Data API,
-- or by a project's cascade) leaves a tombstone here in the same transaction; the bucket object, local copy and
-- cache entry are removed after the commit, and the tombstone goes once all are gone. What fails is retried by
-- the drain and by maintenance. So the row disappears for its owner at once, and no object outlives its row.
-- Service only, like the upload outbox. Several tombstones may name one generation id (deleted, saved again under
-- the same id elsewhere, deleted again): each keeps its own key.

create table codebegen_private.pending_deletions (
  id bigint generated always as identity primary key,
  generation_id uuid not null,
  project_id uuid not null,
  version integer not null,
  storage_key text not null,
  deleted_at timestamptz not null default now(),
  attempts integer not null default 0 check (attempts >= 0),
  last_error text,
  next_attempt_at timestamptz not null default now()
);
create index pending_deletions_due_idx on codebegen_private.pending_deletions (next_attempt_at);

alter table codebegen_private.pending_deletions enable row level security;
revoke all on codebegen_private.pending_deletions from public, anon, authenticated;
grant select, insert, update, delete on codebegen_private.pending_deletions to service_role;

-- Security definer: a user's delete (RLS decides it) must be able to leave the tombstone it cannot see.
create function codebegen_private.record_deletion() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into codebegen_private.pending_deletions (generation_id, project_id, version, storage_key)
  values (old.id, old.project_id, old.version, old.storage_key);
  return old;
end
$$;
revoke all on function codebegen_private.record_deletion() from public;

create trigger generations_record_deletion after delete on public.generations
  for each row execute function codebegen_private.record_deletion();
