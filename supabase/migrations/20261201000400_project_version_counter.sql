-- Versions are never reused within a project, even after deletes. `max(version) + 1` handed the number of a deleted
-- newest generation out again, so "v3" could name two generations over time (and their keys, folders and download
-- names repeat). Each project now keeps the highest version it ever had; a save allocates `last_version + 1` under
-- the per-project advisory lock it already holds, and refuses an explicit version at or below the counter.
--
-- Who moves the counter: a trigger on generations insert, `security definer`, not a function the API calls.
-- - Users have no UPDATE privilege on projects (no UPDATE policy either), and keep none: the trigger runs as its
--   owner, so a user's save (RLS) and the service's bump the counter the same way.
-- - It moves only along with a row RLS let in, and for every path that inserts one (the API, the migration CLI,
--   a direct Data API insert): the counter can never lag behind a generation. A callable definer function would
--   let a user move their counter at will and could be forgotten by a caller.
-- - `greatest`: it only ever moves up (an older version registered later, e.g. a legacy import, leaves it alone).

alter table public.projects add column last_version integer not null default 0 check (last_version >= 0);

update public.projects p
set last_version = g.max_version
from (select project_id, max(version) as max_version from public.generations group by project_id) g
where g.project_id = p.id;

create function public.bump_project_last_version() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.projects set last_version = greatest(last_version, new.version) where id = new.project_id;
  return null;
end
$$;
-- A trigger function is not called by anyone; the trigger fires whoever inserts.
revoke all on function public.bump_project_last_version() from public, anon, authenticated;

create trigger generations_bump_project_last_version after insert on public.generations
  for each row execute function public.bump_project_last_version();

-- A user's new project starts at 0 like the API's: a user cannot create one with the counter moved.
drop policy "users create projects they own" on public.projects;
create policy "users create projects they own" on public.projects
  for insert to authenticated with check (owner_id = (select auth.uid()) and last_version = 0);
