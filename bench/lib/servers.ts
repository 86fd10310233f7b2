import { join } from 'node:path';
import { freePort, JWT_SECRET } from '../../test/helpers/context.ts';
import { ServerProcess } from '../../test/helpers/server-process.ts';
import type { StandInProcess } from '../../test/storage-standin/process.ts';
import { seedPGlite } from './pglite-template.ts';

export type Side = 'local' | 'cloud';

/**
 * `npm start`'s server (scripts/serve.ts, embedded PGlite on disk, or DATABASE_URL from `env`) in a process of its
 * own, with its folders under `dir/name`; cloud storage on (against `standIn`) or off. Run from the repository's root.
 */
export async function startServer(dir: string, name: string, standIn?: StandInProcess, env: Record<string, string> = {}): Promise<ServerProcess> {
  const pgliteDir = join(dir, name, 'db');
  if (!env.DATABASE_URL) await seedPGlite(pgliteDir);
  return new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: join(dir, name, 'projects'),
    CACHE_PATH: join(dir, name, 'cache'),
    PGLITE_DATA_DIR: pgliteDir,
    SUPABASE_JWT_SECRET: JWT_SECRET,
    LOG_LEVEL: 'warn',
    ...(standIn ? { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: standIn.url, SUPABASE_SERVICE_KEY: standIn.serviceKey } : { USE_CLOUD_STORAGE: 'false' }),
    ...env,
  }).start();
}
