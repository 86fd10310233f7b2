import { createDownloadSigner, downloadKey } from './auth/download-token.ts';
import { createAuthenticator } from './auth/verify-jwt.ts';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { createGenerationsApp, type HealthReport } from './http/generations-app.ts';
import type { Logger } from './log.ts';
import { GenerationService } from './storage/generation-service.ts';
import { LocalStore } from './stores/local-store.ts';

/**
 * The composition root shared by every host (Node server, edge entry, tests): the one place that picks the
 * implementations behind the generations app. Hosts bring what differs per runtime: the database and the secret.
 */
export function buildGenerationsApp(config: Config, db: Database, log: Logger, opts: { jwtSecret?: string; now?: () => number } = {}) {
  const jwtSecret = config.auth.jwtSecret ?? opts.jwtSecret;
  const local = new LocalStore(config.storagePath);
  const service = new GenerationService({
    db,
    local,
    limits: config.limits,
    cloudEnabled: config.useCloudStorage,
    log,
    now: opts.now && (() => new Date(opts.now!())),
  });
  const health = async (): Promise<HealthReport> => {
    const dbOk = await db.asService((tx) => tx.query('select 1')).then(
      () => true,
      (err) => (log.warn('health: database unreachable', { error: err }), false),
    );
    const storageOk = await local.writable();
    return {
      status: dbOk && storageOk ? 'ok' : 'degraded',
      db: { ok: dbOk },
      storage: { ok: storageOk },
      cloud: { enabled: config.useCloudStorage, ok: null },
    };
  };
  const app = createGenerationsApp({
    service,
    authenticate: createAuthenticator({ jwtSecret, jwksUrl: config.auth.jwksUrl, serviceKey: config.supabase.serviceKey }),
    downloads: createDownloadSigner(downloadKey({ downloadTokenSecret: config.auth.downloadTokenSecret, jwtSecret }), config.downloadUrlTtlSeconds, opts.now),
    health,
    publicUrl: config.publicUrl,
    cloudEnabled: config.useCloudStorage,
    maxRequestBytes: config.limits.maxRequestBytes,
    corsAllowedOrigins: config.corsAllowedOrigins,
    log,
  });
  return { app, service, local };
}
