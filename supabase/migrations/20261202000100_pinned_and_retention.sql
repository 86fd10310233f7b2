-- Pinning, and the one query that selects what the operator's retention policy removes (RETENTION_KEEP_LAST,
-- RETENTION_MAX_AGE_DAYS; applied by maintenance, see docs/STORAGE_SETUP.md §10).
--
-- `pinned`: the owner wants this generation kept; retention never removes it. Users may flip it on their own rows
-- and change nothing else, with the same tools the earlier migrations use:
-- - a column-level grant, UPDATE (pinned) only: an update naming any other column (upload state, ids, owner,
--   content) is refused for lack of privilege (42501), whatever a policy says; service_role keeps its table grant;
-- - an UPDATE policy on their own rows, so RLS decides whose row exactly as for select and delete: the API's pin runs
--   as the user, and a frontend pinning through the Data API gets the same answer. Without WITH CHECK the USING
--   expression also checks the new row (it stays its owner's; owner_id cannot be written anyway).
-- The touch_updated_at trigger moves updated_at on a pin like on any change (triggers are not bound by column grants).

alter table public.generations add column pinned boolean not null default false;

grant update (pinned) on public.generations to authenticated;

create policy "owners pin their generations" on public.generations
  for update to authenticated
  using (owner_id = (select auth.uid()));

-- What retention would remove now, one row per generation, oldest first: never a pinned one, never the newest
-- (highest version) of its project; of the rest, those ranked below the newest `keep_last` of their project, and
-- those created before `older_than`. A null argument turns that rule off (both null: nothing). `reasons` names the
-- rules that select the row ('keep_last', 'max_age'). Maintenance calls exactly this; operators preview it with
--   select * from codebegen_private.retention_candidates(10, now() - interval '30 days');
-- Service only (schema codebegen_private; security invoker: service_role and the owner see every row).
create function codebegen_private.retention_candidates(keep_last integer, older_than timestamptz)
returns table (
  generation_id uuid,
  project_id uuid,
  owner_id uuid,
  version integer,
  created_at timestamptz,
  rank_in_project bigint,
  reasons text[]
)
language sql
stable
set search_path = ''
as $$
  select r.id, r.project_id, r.owner_id, r.version, r.created_at, r.rank_in_project,
         array_remove(array[
           case when r.rank_in_project > keep_last then 'keep_last' end,
           case when r.created_at < older_than then 'max_age' end
         ], null)
  from (
    select g.id, g.project_id, g.owner_id, g.version, g.created_at, g.pinned,
           row_number() over (partition by g.project_id order by g.version desc) as rank_in_project
    from public.generations g
  ) r
  where not r.pinned
    and r.rank_in_project > 1
    and (r.rank_in_project > keep_last or r.created_at < older_than)
  order by r.created_at, r.project_id, r.version
$$;
revoke all on function codebegen_private.retention_candidates(integer, timestamptz) from public;
grant execute on function codebegen_private.retention_candidates(integer, timestamptz) to service_role;
