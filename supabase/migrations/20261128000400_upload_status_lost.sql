-- A generation whose upload can never succeed (not in the bucket, and no server holds a local copy any more) is
-- marked 'lost' by maintenance, so it stops being retried and shows up plainly instead of failing forever.
alter table public.generations drop constraint generations_upload_status_check;
alter table public.generations add constraint generations_upload_status_check
  check (upload_status in ('local', 'pending', 'uploaded', 'failed', 'lost'));
