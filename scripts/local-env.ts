// The local environment of the Node tools: ./.env, and the embedded default's JWT secret.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../functions/_shared/config.ts';

/**
 * The HS256 secret for the embedded default: SUPABASE_JWT_SECRET when set; otherwise a random one kept beside
 * the embedded database (mode 0600), so `npm start` and `npm run token` agree without anyone choosing a secret.
 * Never used when a JWKS URL is configured.
 */
export function resolveJwtSecret(config: Config): { secret?: string; source: 'env' | 'jwks' | 'local-file'; file?: string } {
  if (config.auth.jwtSecret) return { secret: config.auth.jwtSecret, source: 'env' };
  if (config.auth.jwksUrl) return { source: 'jwks' };
  const file = join(dirname(config.pgliteDataDir), '.jwt-secret');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  return { secret: readFileSync(file, 'utf8').trim(), source: 'local-file', file };
}

/** Loads ./.env into process.env when present (real environment variables win). */
export function loadDotEnv(path = '.env') {
  if (existsSync(path)) process.loadEnvFile(path);
}
