import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { loadConfig, type Config, type Env } from '../../functions/_shared/config.ts';
import { createDatabase, type Database } from '../../functions/_shared/db/database.ts';
import { migrate } from '../../functions/_shared/db/migrate.ts';
import { readMigrations } from '../../functions/_shared/db/migration-files.ts';
import { openPGlite } from '../../functions/_shared/db/pglite-driver.ts';
import { createLogger, type Logger } from '../../functions/_shared/log.ts';
import { buildApps, type WiringOptions } from '../../functions/_shared/wiring.ts';

export const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';
export const SERVICE_KEY = 'sb_secret_test_service_key_for_local_tests';

/** Applies the bootstrap and every migration, as the servers do at start-up. */
export async function migrateAll(db: Database): Promise<string[]> {
  return migrate(db, await readMigrations('supabase/migrations'), readFileSync('supabase/bootstrap/plain-postgres.sql', 'utf8'));
}

/** A fresh embedded Postgres with the bootstrap and every migration applied. */
export async function migratedPGlite(): Promise<Database> {
  const db = createDatabase(await openPGlite());
  await migrateAll(db);
  return db;
}

/** A temp folder removed by the returned function. */
export function tempDir(prefix = 'codebegen-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Log lines captured in memory, so tests can assert on them (and the output stays quiet). */
export function memoryLogger(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return Object.assign(createLogger('debug', (l) => lines.push(JSON.parse(l))), { lines });
}

export async function userToken(sub: string, opts: { expiresIn?: string | number; secret?: string } = {}): Promise<string> {
  return new SignJWT({ role: 'authenticated', aud: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '1h')
    .sign(new TextEncoder().encode(opts.secret ?? JWT_SECRET));
}

export async function serviceToken(): Promise<string> {
  return new SignJWT({ role: 'service_role' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(JWT_SECRET));
}

export interface AppContext {
  config: Config;
  db: Database;
  storage: string;
  log: ReturnType<typeof memoryLogger>;
  app: ReturnType<typeof buildApps>['app'];
  service: ReturnType<typeof buildApps>['service'];
  local: ReturnType<typeof buildApps>['local'];
  uploads: ReturnType<typeof buildApps>['uploads'];
  maintenanceApp: ReturnType<typeof buildApps>['maintenanceApp'];
  maintain: ReturnType<typeof buildApps>['maintain'];
  cloud: ReturnType<typeof buildApps>['cloud'];
  deletions: ReturnType<typeof buildApps>['deletions'];
  /** Shifts the clock the app sees (token expiry, cache age) by `offset` ms from real time. */
  clock: { offset: number };
  close(): Promise<void>;
}

/**
 * The generations app in process, on a fresh PGlite (or the database given, which the caller keeps and closes) and a
 * temp STORAGE_PATH (or the one in env). Two contexts on one database are two hosts with separate disks.
 */
export async function appContext(env: Env = {}, database?: Database, wiring: WiringOptions = {}): Promise<AppContext> {
  const dir = tempDir();
  const config = loadConfig({
    STORAGE_PATH: join(dir.path, 'projects'),
    CACHE_PATH: join(dir.path, 'cache'),
    SUPABASE_JWT_SECRET: JWT_SECRET,
    SUPABASE_SERVICE_KEY: SERVICE_KEY,
    PUBLIC_URL: 'http://storage.test',
    ...env,
  });
  const db = database ?? (await migratedPGlite());
  const log = memoryLogger();
  const clock = { offset: 0 };
  const built = buildApps(config, db, log, { now: () => Date.now() + clock.offset, ...wiring });
  return {
    config,
    db,
    storage: config.storagePath,
    log,
    clock,
    ...built,
    close: async () => {
      await built.uploads?.stop();
      if (!database) await db.close();
      dir.remove();
    },
  };
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A typical small generation: path -> content. */
export function sampleFiles(n = 5, tag = ''): Record<string, string> {
  const files: Record<string, string> = {
    'app/main.py': `from fastapi import FastAPI\napp = FastAPI()${tag}\n`,
    'requirements.txt': 'fastapi\nuvicorn\n',
    'README.md': `# Generated ${tag}\n`,
  };
  for (let i = 3; i < n; i++) files[`app/routers/r${i}.py`] = `# router ${i}${tag}\n`;
  return files;
}
