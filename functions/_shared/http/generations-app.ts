import { Hono, type Context } from 'hono';
import { cors } from 'hono/cors';
import { ErrorCode } from '../errors.ts';
import { diffRoutes } from './diff-routes.ts';
import { downloadRoutes } from './download-routes.ts';
import { renderErrors } from './error-handling.ts';
import { filesRoutes } from './files-routes.ts';
import { generationRoutes } from './generations-routes.ts';
import { metaRoutes } from './meta-routes.ts';
import { restoreRoutes } from './restore-routes.ts';
import { routeContext, type GenerationsAppDeps } from './route-context.ts';

export type { GenerationsAppDeps, HealthReport } from './route-context.ts';

/**
 * The `generations` function: save, list, get, pin, download (tar.gz or zip), restore and delete generations, and
 * read their files one by one and diff them. Served by Supabase at
 * /functions/v1/generations/..., which hands the app the path /generations/..., hence the basePath. The composition
 * root of its routes: each group lives in a file of its own (`*-routes.ts`) and is wired here, between the
 * middleware every route shares and the 405s, registered last.
 */
export function createGenerationsApp(deps: GenerationsAppDeps) {
  const { log } = deps;
  const app = new Hono({ strict: false }).basePath('/generations');
  const rc = routeContext(deps);

  app.use(
    '*',
    cors({
      origin: deps.corsAllowedOrigins.includes('*') ? '*' : deps.corsAllowedOrigins,
      allowHeaders: ['authorization', 'x-client-info', 'apikey', 'content-type', 'if-none-match'],
      allowMethods: ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
      exposeHeaders: ['content-disposition', 'x-checksum-sha256', 'idempotent-replayed', 'etag', 'location', 'retry-after'],
      maxAge: 86_400,
    }),
  );
  // One line per request; the path only, never the query (download tokens travel there).
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    log.info('request', { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) });
  });
  renderErrors(app, log);

  // /health and /openapi.json before /:id, which would otherwise take them as (bad) ids.
  app.route('/', metaRoutes(rc));
  app.route('/', generationRoutes(rc));
  app.route('/', downloadRoutes(rc));
  app.route('/', filesRoutes(rc));
  app.route('/', diffRoutes(rc));
  app.route('/', restoreRoutes(rc));

  // Known paths, other methods: 405 with what is allowed (registered last, so only unmatched requests land here).
  const notAllowed = (allow: string) => (c: Context) =>
    c.json({ error: { code: ErrorCode.MethodNotAllowed, message: `${c.req.method} is not allowed here; use ${allow}` } }, 405, { allow });
  app.all('/', notAllowed('GET, POST'));
  app.all('/:id/download', notAllowed('GET'));
  app.all('/:id/files', notAllowed('GET'));
  app.all('/:id/files/*', notAllowed('GET'));
  app.all('/:id/diff', notAllowed('GET'));
  app.all('/:id/restore', notAllowed('POST'));
  app.all('/:id', notAllowed('GET, PATCH, DELETE'));

  return app;
}
