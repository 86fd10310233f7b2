-- Projects (with their owner) and the generations saved into them.
-- Row-level security, not handler code, decides who reads, writes and deletes what.

create table public.projects (
  id uuid primary key,
  owner_id uuid not null,
  created_at timestamptz not null default now(),
  -- target of generations' composite foreign key: a generation's owner is always its project's owner
  constraint projects_id_owner_key unique (id, owner_id)
);
create index projects_owner_id_idx on public.projects (owner_id);

create table public.generations (
  id uuid primary key,
  project_id uuid not null,
  owner_id uuid not null,
  version integer not null check (version >= 1),
  file_count integer not null check (file_count >= 0),
  total_size_bytes bigint not null check (total_size_bytes >= 0),
  archive_size_bytes bigint not null check (archive_size_bytes > 0),
  -- digest of the exact tar.gz bytes that downloads serve and the bucket holds
  archive_sha256 text not null check (archive_sha256 ~ '^[0-9a-f]{64}$'),
  -- digest of what the caller sent (paths, contents, metadata): tells a replay from a conflicting re-send
  content_sha256 text not null check (content_sha256 ~ '^[0-9a-f]{64}$'),
  manifest jsonb not null,
  -- key in the bucket: {project_id}/generations/v{version}__{id}.tar.gz
  storage_key text not null,
  -- local: cloud off when saved; pending/failed: waiting for (another) upload; uploaded: verified in the bucket
  upload_status text not null default 'local' check (upload_status in ('local', 'pending', 'uploaded', 'failed')),
  upload_attempts integer not null default 0 check (upload_attempts >= 0),
  upload_error text,
  uploaded_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint generations_project_version_key unique (project_id, version),
  -- a user can never save into a project another user owns, whatever the role: enforced by the key itself
  constraint generations_project_owner_fkey foreign key (project_id, owner_id)
    references public.projects (id, owner_id) on update cascade on delete cascade
);
create index generations_owner_id_idx on public.generations (owner_id);
create index generations_upload_queue_idx on public.generations (updated_at) where upload_status in ('pending', 'failed');

create function public.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
create trigger generations_touch_updated_at before update on public.generations
  for each row execute function public.touch_updated_at();

-- Privileges: anon gets nothing; users select/insert/delete (RLS narrows to their rows); service_role all.
revoke all on public.projects, public.generations from anon, authenticated;
grant select, insert, delete on public.projects, public.generations to authenticated;
grant select, insert, update, delete on public.projects, public.generations to service_role;

alter table public.projects enable row level security;
alter table public.generations enable row level security;

create policy "owners read their projects" on public.projects
  for select to authenticated using (owner_id = (select auth.uid()));
create policy "users create projects they own" on public.projects
  for insert to authenticated with check (owner_id = (select auth.uid()));
create policy "owners delete their projects" on public.projects
  for delete to authenticated using (owner_id = (select auth.uid()));
-- no update policy: neither ownership nor ids move through the API

create policy "owners read their generations" on public.generations
  for select to authenticated using (owner_id = (select auth.uid()));
create policy "owners add generations to their projects" on public.generations
  for insert to authenticated with check (
    owner_id = (select auth.uid())
    and exists (select 1 from public.projects p where p.id = project_id and p.owner_id = (select auth.uid()))
  );
create policy "owners delete their generations" on public.generations
  for delete to authenticated using (owner_id = (select auth.uid()));
-- no update policy: upload status is the service's to record
