import { Hono } from 'hono';
import { limitBody, readJsonBody } from './json-body.ts';
import type { RouteContext } from './route-context.ts';
import { restoreRequest } from './schemas.ts';

/** A restore body is at most a generation id. */
const MAX_RESTORE_BODY_BYTES = 4096;

/**
 * POST /{id}/restore: the generation saved again as its project's next version (same files and metadata, plus
 * `restored_from`), server side; idempotent by an optional `generation_id`, like a save.
 */
export function restoreRoutes(rc: RouteContext): Hono {
  const { deps, principal, idParam, views } = rc;
  const app = new Hono();

  app.post('/:id/restore', limitBody(MAX_RESTORE_BODY_BYTES), async (c) => {
    const id = idParam(c);
    const who = await principal(c);
    const body = await readJsonBody(c, restoreRequest, { optional: true });
    const { record, created, source } = await deps.service.restoreVersion(who, id, { generationId: body?.generation_id });
    if (!created) c.header('idempotent-replayed', 'true');
    c.header('location', `${rc.functionUrl}/${record.id}`);
    return c.json({ ...(await views.full(record)), restored_from: { generation_id: source.id, version: source.version } }, 201);
  });

  return app;
}
