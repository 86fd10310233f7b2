import { serve, type ServerType } from '@hono/node-server';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { ConfigError, loadConfig, supabaseJwksUrl, type Env } from '../functions/_shared/config.ts';
import { createDatabase, type Database } from '../functions/_shared/db/database.ts';
import { migrate } from '../functions/_shared/db/migrate.ts';
import { readMigrations } from '../functions/_shared/db/migration-files.ts';
import { openPGlite } from '../functions/_shared/db/pglite-driver.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { createLogger, type Logger } from '../functions/_shared/log.ts';
import { AppError, ErrorCode } from '../functions/_shared/errors.ts';
import { routeNotFound } from '../functions/_shared/http/error-handling.ts';
import { overlap } from '../functions/_shared/stores/path-guard.ts';
import { buildApps, type WiringOptions } from '../functions/_shared/wiring.ts';
import { WorkerTreeWriter } from './tree-writer-workers.ts';
import { openLocked } from './data-dir-lock.ts';
import { resolveJwtSecret } from './local-env.ts';

const repoPath = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));

/**
 * Opens DATABASE_URL, or the embedded PGlite in `pgliteDataDir`, and applies pending migrations. The embedded one
 * is locked to this process first (a second one gets DataDirLockedError, nothing opened); close() releases it.
 */
export async function openDatabase(config: { databaseUrl?: string; pgliteDataDir: string }, log: Logger): Promise<Database> {
  let db: Database;
  if (config.databaseUrl) db = createDatabase(openPostgres(config.databaseUrl));
  else {
    const dataDir = config.pgliteDataDir;
    db = createDatabase(
      await openLocked(dataDir, async () => {
        await mkdir(dataDir, { recursive: true });
        return openPGlite(dataDir);
      }),
    );
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
  // loadConfig compared the two as spelled; here as the disk sees them (symlinks, bind mounts), before anything opens.
  if (await overlap(config.cachePath, config.storagePath)) {
    throw new ConfigError('[config] CACHE_PATH and STORAGE_PATH are the same folder or one is inside the other once symlinks and mounts are resolved: cache cleanup would delete generations; point CACHE_PATH elsewhere');
  }
  await ensurePortFree(config.port, config.host); // before anything is created or locked: a taken port costs nothing
  const { secret, source } = resolveJwtSecret(config);
  const db = await openDatabase(config, log);
  const treeWriter = new WorkerTreeWriter();
  const { app: generations, maintenanceApp, maintain, local, cloud, uploads, deletions } = buildApps(config, db, log, { jwtSecret: secret, treeWriter, ...opts.wiring });
  const swept = await local.sweepScratch();
  if (swept) log.warn('removed scratch folders left by an earlier crash', { count: swept });
  if (cloud) {
    try {
      await cloud.ensureBucket();
    } catch (err) {
      if (!(err instanceof AppError)) {
        await db.close();
        throw err; // e.g. a public bucket: refuse to start
      }
      log.error('bucket check failed; saves stay local and uploads will be retried', { error: err });
    }
  }
  // Every UPLOAD_RETRY_SECONDS and now: uploads a crash or a cloud outage left pending or failed (and what was saved
  // while cloud was off), and deletes whose copies were not all removed at once.
  const retry = async () => {
    await uploads?.resume().catch((err) => log.error('upload retry scan failed', { error: err }));
    await deletions.drain().catch((err) => log.error('deletion retry scan failed', { error: err }));
  };
  await retry();
  const retryTimer = setInterval(() => void retry(), config.uploads.retrySeconds * 1000);
  retryTimer.unref();
  // Not strict, like the apps it mounts: `…/generations/` is `…/generations` (openapi-fetch sends the former for "/").
  const root = new Hono({ strict: false });
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
  // Checked free at the start; still, another process may have taken it since.
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch: root.fetch, port: config.port, hostname: host }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  }).catch(async (err: unknown) => {
    clearInterval(retryTimer);
    await uploads?.stop();
    await db.close();
    throw listenError(err, config.port, host);
  });
  server.on('clientError', answerMalformed);
  answerOddities(server);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info('server started', { url: `http://${host}:${port}/functions/v1/generations`, database: config.databaseUrl ? 'postgres' : 'pglite', jwt_secret: source, cloud: config.useCloudStorage });
  if (!config.databaseUrl && config.useCloudStorage) log.warn('the embedded PGlite runs with fsync off and is not power-safe: an OS crash or power loss can lose acknowledged saves; production belongs on DATABASE_URL', { pglite_data_dir: config.pgliteDataDir });

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
        await treeWriter.close();
        log.info('server stopped');
      })()),
  };
}

/** The port (or host) cannot be listened on: a one-line message naming the setting to change. */
export class ListenError extends Error {
  override name = 'ListenError';
}

function listenError(err: unknown, port: number, host: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new ListenError(`[server] port ${port} on ${host} is already in use: stop what listens there, or set PORT to a free port`, { cause: err });
  if (code === 'EACCES') return new ListenError(`[server] not allowed to listen on port ${port} (EACCES): set PORT to one above 1023`, { cause: err });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new ListenError(`[server] cannot listen on ${host} (${code}): set HOST to an address of this machine`, { cause: err });
  return err;
}

/** Binds host:port and lets go at once, so that a taken port stops the start before the database is touched. */
async function ensurePortFree(port: number, host: string): Promise<void> {
  if (port === 0) return; // any free port will do
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(port, host, () => probe.close(() => resolve()));
  }).catch((err: unknown) => {
    throw listenError(err, port, host);
  });
}

/**
 * What Node answers itself, outside any route, gets our JSON error body too: `Expect:` values other than
 * 100-continue (Node's bare 417), CONNECT (Node closes the socket), and request targets that are not a path
 * (`GET *`, `GET http://…`), which Hono cannot route.
 */
function answerOddities(server: ServerType): void {
  const json = (code: ErrorCode, message: string) => JSON.stringify({ error: { code, message } });
  const http = server as import('node:http').Server;
  http.on('checkExpectation', (req, res) => {
    const body = json(ErrorCode.InvalidRequest, `Expect: ${String(req.headers.expect).slice(0, 60)} is not supported (only 100-continue)`);
    res.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
  });
  http.on('connect', (_req, socket: Duplex) => {
    const body = json(ErrorCode.MethodNotAllowed, 'CONNECT is not allowed here');
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nallow: GET, POST, DELETE\r\nconnection: close\r\n\r\n${body}`);
  });
  // Ahead of Hono's own listener: a target that is not a path is answered here and never reaches it.
  const listeners = http.listeners('request') as ((req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void)[];
  http.removeAllListeners('request');
  http.on('request', (req, res) => {
    if (req.url?.startsWith('/')) return void listeners.forEach((l) => l(req, res));
    const body = json(ErrorCode.InvalidRequest, 'the request target must be a path (/functions/v1/…)');
    res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
  });
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

