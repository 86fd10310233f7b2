import { Hono } from 'hono';
import { badRequest, invalidPath } from '../errors.ts';
import { jsonProblem } from '../json-safety.ts';
import { isObject, limitBody, parseJsonBody, readJsonBody, requireJson } from './json-body.ts';
import type { RouteContext } from './route-context.ts';
import { describeIssues, listQuery, pinRequest, saveRequest } from './schemas.ts';

/** The collection and its items: save (POST /), list (GET /), get, pin (PATCH) and delete one generation. */
export function generationRoutes(rc: RouteContext): Hono {
  const { deps, principal, idParam, views } = rc;
  const { service } = deps;
  const app = new Hono();

  app.post('/', limitBody(deps.maxRequestBytes), async (c) => {
    const who = await principal(c);
    requireJson(c);
    const json = parseJsonBody(new Uint8Array(await c.req.arrayBuffer()));
    // Checked on the raw JSON: zod's records, like every JS object, would silently drop a "__proto__" key.
    if (isObject(json)) {
      if (isObject(json.files) && Object.hasOwn(json.files, '__proto__')) throw invalidPath('files["__proto__"]: reserved name');
      const problem = jsonProblem(json.metadata);
      if (problem) throw badRequest(`metadata: ${problem}`);
    }
    const parsed = saveRequest.safeParse(json);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const b = parsed.data;
    const { record, created } = await service.save(who, {
      projectId: b.project_id,
      generationId: b.generation_id,
      version: b.version,
      files: b.files,
      metadata: b.metadata,
      ownerId: b.owner_id,
    });
    if (!created) c.header('idempotent-replayed', 'true');
    c.header('location', `${rc.functionUrl}/${record.id}`);
    return c.json(await views.full(record), 201);
  });

  app.get('/', async (c) => {
    const who = await principal(c);
    const parsed = listQuery.safeParse(c.req.query());
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const { project_id, limit, cursor } = parsed.data;
    const before = cursor === undefined ? undefined : decodeCursor(cursor);
    const page = await service.list(who, project_id, limit, before);
    const last = page.items.at(-1);
    return c.json({ items: page.items.map(views.summary), next_cursor: page.more && last ? encodeCursor(last.version) : null });
  });

  app.get('/:id', async (c) => {
    const id = idParam(c);
    return c.json(await views.full(await service.get(await principal(c), id)));
  });

  // Pinning: a pinned generation is never removed by the retention policy (maintenance). RLS decides whose.
  app.patch('/:id', limitBody(MAX_PIN_BODY_BYTES), async (c) => {
    const id = idParam(c);
    const who = await principal(c);
    const { pinned } = (await readJsonBody(c, pinRequest))!;
    return c.json(await views.full(await service.setPinned(who, id, pinned)));
  });

  app.delete('/:id', async (c) => {
    const id = idParam(c);
    await service.delete(await principal(c), id);
    return c.body(null, 204);
  });

  return app;
}

/** `{"pinned": true}` and some whitespace. */
const MAX_PIN_BODY_BYTES = 4096;

const encodeCursor = (version: number) => btoa(`v:${version}`).replace(/=+$/, '');

function decodeCursor(cursor: string): number {
  let text = '';
  try {
    text = atob(cursor);
  } catch {
    /* falls through to the error below */
  }
  const m = /^v:(\d{1,10})$/.exec(text);
  // Any version a row can hold (Postgres integer; the migration may register versions above the API's own limit).
  if (!m || Number(m[1]) > 2_147_483_647) throw badRequest('cursor: not a cursor this API returned');
  return Number(m[1]);
}
