import { serve, type ServerType } from '@hono/node-server';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { loadConfig, supabaseJwksUrl, type Env } from '../functions/_shared/config.ts';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { migrate } from '../functions/_shared/db/migrate.ts';
import { readMigrations } from '../functions/_shared/db/migration-files.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { createLogger, type Logger } from '../functions/_shared/log.ts';
import { AppError, ErrorCode } from '../functions/_shared/errors.ts';
import { routeNotFound } from '../functions/_shared/http/error-handling.ts';
import { buildApps, type WiringOptions } from '../functions/_shared/wiring.ts';
import { resolveJwtSecret } from './local-env.ts';

const repoPath = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));

/** Opens DATABASE_URL, or the embedded PGlite in `pgliteDataDir`, and applies pending migrations. */
export async function openDatabase(config: { databaseUrl?: string; pgliteDataDir: string }, log: Logger): Promise<Database> {
  let db: Database;
  if (config.databaseUrl) db = createDatabase(openPostgres(config.databaseUrl));
  else {
    await mkdir(config.pgliteDataDir, { recursive: true });
    db = createDatabase(await openPGlite(config.pgliteDataDir));
  }
  try {
    const applied = await migrate(db, await readMigrations(repoPath('supabase/migrations')), readFileSync(repoPath('supabase/bootstrap/plain-postgres.sql'), 'utf8'));
    if (applied.length) log.info('migrations applied', { versions: applied });
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

export interface NodeServer {
  url: string;
  port: number;
  /** Stops accepting, finishes in-flight requests, closes the database. */
  close(): Promise<void>;
}

/** Starts every function under /functions/v1 on Node: the embedded default and self-hosting. */
export async function startNodeServer(env: Env, opts: { log?: Logger; wiring?: WiringOptions } = {}): Promise<NodeServer> {
  const loaded = loadConfig(env);
  // Against a Supabase project, accept its users' tokens (asymmetric keys) without further setting.
  const jwksUrl = loaded.auth.jwksUrl ?? (loaded.supabase.url && supabaseJwksUrl(loaded.supabase.url));
  const config = { ...loaded, auth: { ...loaded.auth, jwksUrl } };
  const log = opts.log ?? createLogger(config.logLevel);
  const { secret, source } = resolveJwtSecret(config);
  const db = await openDatabase(config, log);
  const { app: generations, maintenanceApp, maintain, local, cloud, uploads } = buildApps(config, db, log, { jwtSecret: secret, ...opts.wiring });
  const swept = await local.sweepScratch();
  if (swept) log.warn('removed scratch folders left by an earlier crash', { count: swept });
  let retryTimer: ReturnType<typeof setInterval> | undefined;
  if (cloud && uploads) {
    try {
      await cloud.ensureBucket();
    } catch (err) {
      if (!(err instanceof AppError)) {
        await db.close();
        throw err; // e.g. a public bucket: refuse to start
      }
      log.error('bucket check failed; saves stay local and uploads will be retried', { error: err });
    }
    // Whatever a crash or a cloud outage left pending or failed, and whatever was saved while cloud was off.
    await uploads.resume();
    retryTimer = setInterval(() => void uploads.resume().catch((err) => log.error('upload retry scan failed', { error: err })), config.uploads.retrySeconds * 1000);
    retryTimer.unref();
  }
  const root = new Hono();
  // An error answered before a request's body was read (401, 413, 415…) ends the connection: @hono/node-server
  // gives up draining an unread body after 500 ms and drops the socket, which would lose the client's next request.
  root.use(async (c, next) => {
    await next();
    const announcesBody = c.req.header('content-length') !== undefined || c.req.header('transfer-encoding') !== undefined;
    if (c.res.status >= 400 && announcesBody) c.res.headers.set('connection', 'close');
  });
  root.route('/functions/v1', generations);
  root.route('/functions/v1', maintenanceApp);
  root.notFound(routeNotFound);

  const host = config.host;
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: root.fetch, port: config.port, hostname: host }, () => resolve(s));
  });
  server.on('clientError', answerMalformed);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info('server started', { url: `http://${host}:${port}/functions/v1/generations`, database: config.databaseUrl ? 'postgres' : 'pglite', jwt_secret: source, cloud: config.useCloudStorage });

  // On Supabase pg_cron drives maintenance; here, a timer does when AUTO_CLEANUP_ENABLED=true.
  // One pass at a time, and close() waits for the one under way before it closes the database.
  let cleanupTimer: ReturnType<typeof setInterval> | undefined;
  let maintaining: Promise<void> | undefined;
  if (config.autoCleanupEnabled) {
    const pass = () =>
      void (maintaining ??= maintain()
        .then(() => {}, (err) => log.error('maintenance failed', { error: err }))
        .finally(() => (maintaining = undefined)));
    cleanupTimer = setInterval(pass, config.cleanupIntervalHours * 3600_000);
    cleanupTimer.unref();
    log.info('maintenance scheduled', { every_hours: config.cleanupIntervalHours, max_cache_age_hours: config.maxCacheAgeHours });
  }

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      (closing ??= (async () => {
        clearInterval(retryTimer);
        clearInterval(cleanupTimer);
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await uploads?.stop(); // uploads under way finish; the rest stay pending for the next start
        await maintaining;
        await db.close();
        log.info('server stopped');
      })()),
  };
}

/**
 * What Node's HTTP parser refuses before any route runs (headers over 16 KB, broken request lines) gets the same
 * JSON error body as everything else, instead of Node's bare status line.
 */
function answerMalformed(err: NodeJS.ErrnoException, socket: Duplex): void {
  // One request, one answer: if a response went out on this socket already, just end it (as Node's own handler does).
  const answered = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (!socket.writable || answered || err.code === 'ECONNRESET') return void socket.destroy();
  const [status, reason, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', ErrorCode.HeadersTooLarge, 'request headers are over 16 KB']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', ErrorCode.InvalidRequest, 'the request took too long to arrive']
        : [400, 'Bad Request', ErrorCode.InvalidRequest, 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

