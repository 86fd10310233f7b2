import { createDownloadSigner, downloadKey } from './auth/download-token.ts';
import { createAuthenticator } from './auth/verify-jwt.ts';
import type { Config } from './config.ts';
import { unpackLimitsFor } from './limits.ts';
import type { Database } from './db/database.ts';
import { createGenerationsApp, type HealthReport } from './http/generations-app.ts';
import { createMaintenanceApp } from './http/maintenance-app.ts';
import { runMaintenance } from './storage/maintenance.ts';
import type { Logger } from './log.ts';
import { Deletions } from './storage/deletions.ts';
import { GenerationFiles } from './storage/generation-files.ts';
import { GenerationService } from './storage/generation-service.ts';
import { LocalStore, type TreeWriter } from './stores/local-store.ts';
import { LocalGenerationStorage, type GenerationStorage } from './storage/generation-storage.ts';
import { HybridGenerationStorage } from './storage/hybrid-storage.ts';
import { EDGE_DRAIN_BUDGET, UploadQueue } from './storage/upload-queue.ts';
import { SupabaseCloudStore, type CloudStore, type RetryPolicy } from './stores/cloud-store.ts';

/**
 * The composition root shared by every host (Node server, edge entries, tests): the one place that picks the
 * implementations behind the `generations` and `storage-maintenance` apps. Hosts bring what differs per runtime:
 * the database, the secret, and how background work is kept alive.
 */
export interface WiringOptions {
  jwtSecret?: string;
  now?: () => number;
  /** Supabase Edge: `EdgeRuntime.waitUntil`, so background uploads outlive the response. */
  keepAlive?: (work: Promise<unknown>) => void;
  /** Tests shorten the cloud's retry backoff. */
  cloudRetry?: RetryPolicy;
  /** Tests shorten the base timeout of one Storage request (default 60 s, plus 2 s per MiB sent). */
  cloudTimeoutMs?: number;
  /** How a save's folder is made durable (default: `inThreadWriter`); the Node server brings worker threads. */
  treeWriter?: TreeWriter;
}

export function buildApps(config: Config, db: Database, log: Logger, opts: WiringOptions = {}) {
  const jwtSecret = config.auth.jwtSecret ?? opts.jwtSecret;
  const local = new LocalStore(config.storagePath, opts.treeWriter);
  const localStorage = new LocalGenerationStorage(local, log);
  const cache = new LocalStore(config.cachePath);
  let storage: GenerationStorage = localStorage;
  let cloud: CloudStore | undefined;
  let uploads: UploadQueue | undefined;
  if (config.useCloudStorage) {
    const { url, serviceKey, bucket } = config.supabase;
    cloud = new SupabaseCloudStore({ url: url!, serviceKey: serviceKey!, bucket, fileSizeLimit: config.supabase.uploadLimitBytes, timeoutMs: opts.cloudTimeoutMs }, log, opts.cloudRetry);
    uploads = new UploadQueue(db, localStorage, cloud, log, {
      concurrency: config.uploads.concurrency,
      lostAfterMs: 3600_000,
      leaseMs: config.uploads.leaseSeconds * 1000,
      keepAlive: opts.keepAlive,
      now: opts.now,
    });
    storage = new HybridGenerationStorage(localStorage, cache, cloud, uploads, log, {
      cacheTtlMs: config.cacheTtlHours * 3600_000,
      unpackLimits: unpackLimitsFor(config.limits),
      now: opts.now,
    });
  }
  const deletions = new Deletions(db, storage, log, opts.now);
  const service = new GenerationService({
    db,
    local,
    storage,
    deletions,
    // With cloud on, no archive may be larger than Storage accepts: refused at save, not failed forever later.
    limits: config.useCloudStorage ? { ...config.limits, maxArchiveBytes: config.supabase.uploadLimitBytes } : config.limits,
    log,
    now: opts.now && (() => new Date(opts.now!())),
  });
  const files = new GenerationFiles({ service, storage });
  const health = async (): Promise<HealthReport> => {
    const dbOk = await db.asService((tx) => tx.query('select 1')).then(
      () => true,
      (err) => (log.warn('health: database unreachable', { error: err }), false),
    );
    const storageOk = await local.writable();
    // The cloud being down degrades nothing that matters now: saves stay local and uploads are retried.
    const cloudOk = cloud ? await cloud.ping().catch(() => false) : null;
    const outbox = uploads && dbOk ? await uploads.backlog().catch(() => null) : null;
    return {
      status: dbOk && storageOk ? 'ok' : 'degraded',
      db: { ok: dbOk },
      storage: { ok: storageOk },
      cloud: { enabled: config.useCloudStorage, ok: cloudOk },
      outbox,
    };
  };
  const authenticate = createAuthenticator({ jwtSecret, jwksUrl: config.auth.jwksUrl, jwks: config.auth.jwks, serviceKey: config.supabase.serviceKey, serviceKeys: config.auth.serviceKeys });
  const maintain = () =>
    runMaintenance({
      db,
      cache,
      local,
      deletions,
      cloud: cloud && uploads && { store: cloud, uploads, drainBudget: EDGE_DRAIN_BUDGET },
      maxCacheAgeHours: config.maxCacheAgeHours,
      // Retention deletes go through the service, exactly as the API's DELETE.
      retention: { policy: config.retention, generations: service },
      log,
      now: opts.now,
    });
  const drain = uploads && (async () => ({ ...(await uploads.drain(EDGE_DRAIN_BUDGET)), deletions: await deletions.drain() }));
  const maintenanceApp = createMaintenanceApp({ authenticate, run: maintain, drain, log });
  const app = createGenerationsApp({
    service,
    files,
    authenticate,
    downloads: createDownloadSigner(downloadKey({ downloadTokenSecret: config.auth.downloadTokenSecret, jwtSecret, serviceKey: config.supabase.serviceKey }), config.downloadUrlTtlSeconds, opts.now),
    health,
    publicUrl: config.publicUrl,
    cloudEnabled: config.useCloudStorage,
    maxRequestBytes: config.limits.maxRequestBytes,
    corsAllowedOrigins: config.corsAllowedOrigins,
    log,
  });
  return { app, maintenanceApp, maintain, drain, service, local, cloud, uploads, deletions };
}
