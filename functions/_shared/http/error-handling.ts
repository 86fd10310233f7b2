import type { Context, Hono } from 'hono';
import { ErrorCode, toErrorBody } from '../errors.ts';
import type { Logger } from '../log.ts';

/** The JSON 404 every app (and the Node host's root) answers for an unknown route. */
export const routeNotFound = (c: Context) => c.json({ error: { code: ErrorCode.NotFound, message: `no route for ${c.req.method} ${c.req.path}` } }, 404);

/**
 * Renders every error once, as `{ "error": { "code", "message" } }`; 5xx are logged with their cause and never
 * shown to the caller. Unknown routes are a JSON 404.
 */
export function renderErrors(app: Hono, log: Logger, failure = 'request failed'): void {
  app.onError((err, c) => {
    const { status, body } = toErrorBody(err);
    if (status >= 500) log.error(failure, { method: c.req.method, path: c.req.path, error: err, cause: (err as Error).cause });
    return c.json(body, status);
  });
  app.notFound(routeNotFound);
}
