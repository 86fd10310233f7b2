import { Hono } from 'hono';
import type { z } from 'zod';
import type { FileDigest } from '../archive/manifest.ts';
import { badRequest } from '../errors.ts';
import type { FileChange } from '../storage/generation-diff.ts';
import type { RouteContext } from './route-context.ts';
import { describeIssues, diffQuery, type diffBody } from './schemas.ts';

/** GET /{id}/diff?against={other_id}[&patch=true]: what changed from `against` to `id`, two generations of one project. */
export function diffRoutes(rc: RouteContext): Hono {
  const { deps, principal, idParam } = rc;
  const app = new Hono();

  app.get('/:id/diff', async (c) => {
    const id = idParam(c);
    const query = diffQuery.safeParse(c.req.query());
    if (!query.success) throw badRequest(describeIssues(query.error));
    const d = await deps.files.diff(await principal(c), id, query.data.against, { patch: query.data.patch === 'true' });
    const digest = (f: FileDigest) => ({ size_bytes: f.size, sha256: f.sha256 });
    const patchOf = (ch: FileChange) => ({ ...(ch.patch !== undefined && { patch: ch.patch }), ...(ch.patch_omitted && { patch_omitted: ch.patch_omitted }) });
    const body: z.input<typeof diffBody> = {
      generation_id: d.to.id,
      project_id: d.to.projectId,
      version: d.to.version,
      against: { generation_id: d.from.id, version: d.from.version },
      added: d.added.map((ch) => ({ path: ch.path, ...digest(ch.to!), ...patchOf(ch) })),
      removed: d.removed.map((ch) => ({ path: ch.path, ...digest(ch.from!), ...patchOf(ch) })),
      modified: d.modified.map((ch) => ({ path: ch.path, from: digest(ch.from!), to: digest(ch.to!), ...patchOf(ch) })),
      unchanged_count: d.unchanged_count,
      ...(d.patch_bytes !== undefined && { patch_bytes: d.patch_bytes }),
    };
    return c.json(body);
  });

  return app;
}
