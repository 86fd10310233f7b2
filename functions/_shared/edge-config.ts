import { loadConfig, supabaseJwksUrl, type Config, type Env } from './config.ts';

/**
 * Config on Supabase Edge: the platform provides SUPABASE_URL, SUPABASE_DB_URL and SUPABASE_SERVICE_ROLE_KEY;
 * custom secrets may not start with SUPABASE_ (so the legacy JWT secret comes as JWT_SECRET); only /tmp is
 * writable. User tokens are verified with the project's JWKS, and with JWT_SECRET too when set.
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
  });
  if (!config.databaseUrl) throw new Error('[edge] SUPABASE_DB_URL (or DATABASE_URL) is required');
  // An edge worker's /tmp is gone when the worker is: without the bucket, saves would be lost.
  if (!config.useCloudStorage) throw new Error('[edge] USE_CLOUD_STORAGE=true is required on the edge (only /tmp is writable there)');
  return config;
}
