-- On Supabase, PostgREST exposes public tables to users holding their own token, outside our API. Users keep the
-- writes our API performs as them (insert and delete of generations), but only in the shape the API writes:
-- - a generation's bucket key is derived from its ids, so no row can point at another project's object;
-- - a new row starts with no upload history (only the service records uploads);
-- - projects are never deleted by users (the API does not; a direct delete would orphan files and objects).

alter table public.generations add constraint generations_storage_key_derived
  check (storage_key = project_id::text || '/generations/v' || version::text || '__' || id::text || '.tar.gz');

drop policy "owners add generations to their projects" on public.generations;
create policy "owners add generations to their projects" on public.generations
  for insert to authenticated with check (
    owner_id = (select auth.uid())
    and upload_status in ('local', 'pending')
    and upload_attempts = 0
    and upload_error is null
    and uploaded_at is null
    and exists (select 1 from public.projects p where p.id = project_id and p.owner_id = (select auth.uid()))
  );

drop policy "owners delete their projects" on public.projects;
revoke delete on public.projects from authenticated;

-- the upload queue also scans rows saved while cloud storage was off
drop index public.generations_upload_queue_idx;
create index generations_upload_queue_idx on public.generations (updated_at) where upload_status in ('local', 'pending', 'failed');
