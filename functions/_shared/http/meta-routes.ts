import { Hono } from 'hono';
import { buildOpenApi } from './openapi.ts';
import type { RouteContext } from './route-context.ts';

/** What needs no token: liveness (GET /health) and the OpenAPI document (GET /openapi.json). */
export function metaRoutes(rc: RouteContext): Hono {
  const app = new Hono();
  app.get('/health', async (c) => {
    const report = await rc.deps.health();
    return c.json(report, report.status === 'ok' ? 200 : 503);
  });
  app.get('/openapi.json', (c) => c.json(buildOpenApi(rc.functionUrl)));
  return app;
}
