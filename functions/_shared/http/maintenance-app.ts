import { Hono } from 'hono';
import type { Authenticate } from '../auth/verify-jwt.ts';
import { AppError, ErrorCode, forbidden } from '../errors.ts';
import { renderErrors } from './error-handling.ts';
import type { Logger } from '../log.ts';
import type { MaintenanceReport } from '../storage/maintenance.ts';
import type { DeletionReport } from '../storage/deletions.ts';
import type { DrainReport } from '../storage/upload-queue.ts';

export interface MaintenanceAppDeps {
  authenticate: Authenticate;
  run: () => Promise<MaintenanceReport>;
  /** Uploads due outbox rows within the host's budget; absent with cloud off. */
  drain?: () => Promise<DrainReport & { deletions: DeletionReport }>;
  log: Logger;
}

/**
 * The `storage-maintenance` function: `POST /` runs housekeeping once and answers its summary; `POST /drain`
 * uploads what is due in the upload outbox, within a budget that fits one Edge Function call, and answers what it
 * did and the backlog left. pg_cron calls both through pg_net with the service key; nobody else may (403 for
 * users, 401 without a token).
 */
export function createMaintenanceApp(deps: MaintenanceAppDeps) {
  const app = new Hono({ strict: false }).basePath('/storage-maintenance');
  renderErrors(app, deps.log, 'maintenance failed');
  app.post('/', async (c) => {
    const who = await deps.authenticate(c.req.header('authorization'));
    if (who.kind !== 'service') throw forbidden('maintenance needs the service key');
    return c.json(await deps.run());
  });
  app.post('/drain', async (c) => {
    const who = await deps.authenticate(c.req.header('authorization'));
    if (who.kind !== 'service') throw forbidden('draining the outbox needs the service key');
    if (!deps.drain) throw new AppError(ErrorCode.CloudDisabled, 409, 'cloud storage is off: there is no outbox to drain');
    return c.json(await deps.drain());
  });
  return app;
}
