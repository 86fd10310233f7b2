import { loadConfig, supabaseJwksUrl, type Config, type Env } from './config.ts';

const MiB = 1024 * 1024;
/**
 * What one save may be on the edge, by default: the largest that fits an Edge Function (256 MB, 2 s CPU) with
 * margin, as `bench/edge-save.ts` measured it (8 MB of files: ~380–480 ms CPU, ~192 MB peak under Deno; 12 MB
 * already peaks at ~235 MB). Larger generations belong on a Node host. An operator may set these lower or higher.
 */
export const EDGE_LIMITS = { MAX_GENERATION_BYTES: 8 * MiB, MAX_FILE_BYTES: 8 * MiB, MAX_REQUEST_BYTES: 10 * MiB };

/**
 * Config on Supabase Edge: the platform provides SUPABASE_URL, SUPABASE_DB_URL (a direct connection), the legacy
 * SUPABASE_SERVICE_ROLE_KEY and the newer SUPABASE_SECRET_KEYS (`{"default":"sb_secret_…"}`, every one accepted as the
 * backend, `default` sent to Storage) and SUPABASE_JWKS (user tokens verified without a fetch; the JWKS URL derived
 * from SUPABASE_URL stays the fallback). Custom secrets may not start with SUPABASE_ (so the legacy JWT secret comes
 * as JWT_SECRET, and the transaction pooler's URL as DATABASE_URL, which wins over SUPABASE_DB_URL); only /tmp is
 * writable. Saves are bounded by EDGE_LIMITS unless set otherwise.
 */
export function edgeConfig(env: Env): Config {
  const config = loadConfig({
    ...env,
    SUPABASE_JWT_SECRET: env.SUPABASE_JWT_SECRET ?? env.JWT_SECRET,
    SUPABASE_JWKS_URL: env.SUPABASE_JWKS_URL ?? (env.SUPABASE_URL && supabaseJwksUrl(env.SUPABASE_URL)),
    PUBLIC_URL: env.PUBLIC_URL ?? env.SUPABASE_URL,
    DATABASE_URL: env.DATABASE_URL ?? env.SUPABASE_DB_URL,
    STORAGE_PATH: env.STORAGE_PATH ?? '/tmp/codebegen/projects',
    CACHE_PATH: env.CACHE_PATH ?? '/tmp/codebegen/cache',
    MAX_GENERATION_BYTES: env.MAX_GENERATION_BYTES ?? String(EDGE_LIMITS.MAX_GENERATION_BYTES),
    MAX_FILE_BYTES: env.MAX_FILE_BYTES ?? String(EDGE_LIMITS.MAX_FILE_BYTES),
    MAX_REQUEST_BYTES: env.MAX_REQUEST_BYTES ?? String(EDGE_LIMITS.MAX_REQUEST_BYTES),
  });
  if (!config.databaseUrl) throw new Error('[edge] SUPABASE_DB_URL (or DATABASE_URL) is required');
  // An edge worker's /tmp is gone when the worker is: without the bucket, saves would be lost.
  if (!config.useCloudStorage) throw new Error('[edge] USE_CLOUD_STORAGE=true is required on the edge (only /tmp is writable there)');
  return config;
}
