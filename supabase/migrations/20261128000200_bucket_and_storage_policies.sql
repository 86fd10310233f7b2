-- The private bucket that holds every generation's archive (100 MB: above MAX_GENERATION_BYTES' 50 MB default
-- plus the archive's own overhead, so a valid save can always be uploaded), and storage.objects policies so the bucket is safe
-- even when reached without us: a user holding their own token may read the archives of projects they own and
-- nothing else, and may write nothing (uploads, overwrites and deletes are the service's job; service_role
-- bypasses RLS). Keys are {project_id}/generations/v{version}__{generation_id}.tar.gz.

insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values ('codebegen-projects', 'codebegen-projects', false, 104857600, array['application/gzip'])
on conflict (id) do update
  set public = false,
      file_size_limit = excluded.file_size_limit,
      allowed_mime_types = excluded.allowed_mime_types;

create policy "codebegen: owners read their project archives" on storage.objects
  for select to authenticated
  using (
    bucket_id = 'codebegen-projects'
    and exists (
      select 1 from public.projects p
      where p.id::text = (storage.foldername(name))[1]
        and p.owner_id = (select auth.uid())
    )
  );
-- No insert, update or delete policy for users: with RLS on, those are refused.
