-- The upload outbox: with cloud storage on, a save's transaction stores the archive's exact bytes here, beside the
-- generation row, and the row leaves in the transaction that marks the generation 'uploaded' (after the bucket's
-- copy was verified). Postgres is the one durable thing every host shares (Node hosts, edge workers with their
-- per-worker /tmp), so a 201 means "committed in Postgres, or already verified in the bucket" on all of them.
-- Any host may upload any row under a lease; pg_cron calls the drain when rows are due (next migration).
--
-- Service only: a schema of its own that the Data API does not expose, no privileges for anon/authenticated,
-- and RLS on without a policy (service_role bypasses RLS).

create schema if not exists codebegen_private;
revoke all on schema codebegen_private from public;
grant usage on schema codebegen_private to service_role;

create table codebegen_private.upload_outbox (
  generation_id uuid primary key references public.generations (id) on delete cascade,
  -- the archive's exact bytes, and the digest they must match before they are served or uploaded
  archive bytea not null,
  archive_sha256 text not null check (archive_sha256 ~ '^[0-9a-f]{64}$'),
  -- a drainer's claim: whoever holds an unexpired lease is uploading this row; an expired one is anyone's
  lease_owner text,
  lease_expires_at timestamptz,
  attempts integer not null default 0 check (attempts >= 0),
  last_error text,
  -- backoff: not claimed by a drain before this time
  next_attempt_at timestamptz not null default now(),
  created_at timestamptz not null default now()
);
-- gzip does not compress again: keep the bytes out of line without trying (saves CPU on every insert)
alter table codebegen_private.upload_outbox alter column archive set storage external;
create index upload_outbox_due_idx on codebegen_private.upload_outbox (next_attempt_at);

alter table codebegen_private.upload_outbox enable row level security;
revoke all on codebegen_private.upload_outbox from public, anon, authenticated;
grant select, insert, update, delete on codebegen_private.upload_outbox to service_role;
