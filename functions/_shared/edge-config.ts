import { loadConfig, type Config, type Env } from './config.ts';

/**
 * Config on Supabase Edge: the platform provides SUPABASE_URL, SUPABASE_DB_URL and SUPABASE_SERVICE_ROLE_KEY
 * (custom secrets may not start with SUPABASE_), and only /tmp is writable.
 */
export function edgeConfig(env: Env): Config {
  const config = loadConfig({
    ...env,
    PUBLIC_URL: env.PUBLIC_URL ?? env.SUPABASE_URL,
    DATABASE_URL: env.DATABASE_URL ?? env.SUPABASE_DB_URL,
    STORAGE_PATH: env.STORAGE_PATH ?? '/tmp/codebegen/projects',
    CACHE_PATH: env.CACHE_PATH ?? '/tmp/codebegen/cache',
  });
  if (!config.databaseUrl) throw new Error('[edge] SUPABASE_DB_URL (or DATABASE_URL) is required');
  return config;
}
