import { Hono } from 'hono';
import type { Authenticate } from '../auth/verify-jwt.ts';
import { forbidden } from '../errors.ts';
import { renderErrors } from './error-handling.ts';
import type { Logger } from '../log.ts';
import type { MaintenanceReport } from '../storage/maintenance.ts';

export interface MaintenanceAppDeps {
  authenticate: Authenticate;
  run: () => Promise<MaintenanceReport>;
  log: Logger;
}

/**
 * The `storage-maintenance` function: POST runs housekeeping once and answers its summary. pg_cron calls it
 * through pg_net with the service key; nobody else may (403 for users, 401 without a token).
 */
export function createMaintenanceApp(deps: MaintenanceAppDeps) {
  const app = new Hono({ strict: false }).basePath('/storage-maintenance');
  renderErrors(app, deps.log, 'maintenance failed');
  app.post('/', async (c) => {
    const who = await deps.authenticate(c.req.header('authorization'));
    if (who.kind !== 'service') throw forbidden('maintenance needs the service key');
    return c.json(await deps.run());
  });
  return app;
}
