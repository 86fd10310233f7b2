import { resolve, sep } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';

/** Env records are plain string maps: `process.env` on Node, `Deno.env.toObject()` on the edge. */
export type Env = Record<string, string | undefined>;

const MiB = 1024 * 1024;

const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off', ''])
    .optional()
    .transform((v) => (v === undefined || v === '' ? fallback : ['true', '1', 'yes', 'on'].includes(v)));

const int = (fallback: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return fallback;
      const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

/** A whole number, or undefined when unset or blank: for a feature that is off unless set (`unset` says what off means). */
const optionalInt = (min: number, max: number, unset: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}, got "${v}" (leave it unset to ${unset})` });
        return z.NEVER;
      }
      return n;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const optionalUrl = optionalString.pipe(z.url({ protocol: /^https?$/, message: 'must be an absolute http(s) URL' }).optional());

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const parseJson = (v: string): unknown => {
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
};

/** SUPABASE_SECRET_KEYS as Supabase injects it into Edge Functions: named keys, `{"default":"sb_secret_…"}`. */
const namedKeys = optionalString.transform((v, ctx) => {
  if (v === undefined) return undefined;
  const parsed = parseJson(v);
  // The message never repeats the value: it holds secrets.
  if (!isObject(parsed) || !Object.values(parsed).every((k) => typeof k === 'string')) {
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object of named keys, e.g. {"default":"sb_secret_…"}' });
    return z.NEVER;
  }
  const keys = Object.entries(parsed as Record<string, string>).map(([name, key]) => [name, key.trim()] as const);
  return Object.fromEntries(keys.filter(([, key]) => key !== ''));
});

/** SUPABASE_JWKS as Supabase injects it (the project's public signing keys): `{"keys":[…]}`, or the bare array. */
const jwkSet = optionalString.transform((v, ctx): JSONWebKeySet | undefined => {
  if (v === undefined) return undefined;
  const parsed = parseJson(v);
  const keys = Array.isArray(parsed) ? parsed : isObject(parsed) ? parsed.keys : undefined;
  if (!Array.isArray(keys) || !keys.every((k) => isObject(k) && typeof k.kty === 'string')) {
    ctx.addIssue({ code: 'custom', message: 'must be a JSON Web Key Set: {"keys":[{"kty":…},…]}' });
    return z.NEVER;
  }
  if (keys.some((k) => 'd' in k)) {
    ctx.addIssue({ code: 'custom', message: 'must hold public keys only (a key has a private part "d")' });
    return z.NEVER;
  }
  return { keys } as JSONWebKeySet;
});

const schema = z.object({
  PORT: int(54321, 0, 65535),
  HOST: optionalString.transform((v) => v ?? '127.0.0.1'),
  PUBLIC_URL: optionalUrl,
  STORAGE_PATH: optionalString.transform((v) => v ?? './storage/projects'),
  CACHE_PATH: optionalString.transform((v) => v ?? './storage/cache'),
  PGLITE_DATA_DIR: optionalString.transform((v) => v ?? './storage/db'),
  DATABASE_URL: optionalString,
  SUPABASE_URL: optionalUrl,
  SUPABASE_SERVICE_KEY: optionalString,
  SUPABASE_SERVICE_ROLE_KEY: optionalString,
  SUPABASE_SECRET_KEYS: namedKeys,
  // false once the project's legacy API keys are disabled: Edge Functions keep receiving the disabled service_role JWT.
  ACCEPT_LEGACY_SERVICE_ROLE_KEY: bool(true),
  SUPABASE_BUCKET: optionalString.transform((v) => v ?? 'codebegen-projects'),
  // Supabase's per-project upload limit (Storage settings; 50 MB on the Free plan): no object may be larger.
  STORAGE_UPLOAD_LIMIT_BYTES: int(52_428_800, 1024, 2 ** 40),
  SUPABASE_JWT_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  SUPABASE_JWKS_URL: optionalUrl,
  SUPABASE_JWKS: jwkSet,
  DOWNLOAD_TOKEN_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  USE_CLOUD_STORAGE: bool(false),
  UPLOAD_CONCURRENCY: int(4, 1, 64),
  UPLOAD_RETRY_SECONDS: int(60, 1, 24 * 3600),
  OUTBOX_LEASE_SECONDS: int(60, 2, 3600),
  CACHE_TTL_HOURS: int(2, 0, 24 * 365),
  AUTO_CLEANUP_ENABLED: bool(false),
  CLEANUP_INTERVAL_HOURS: int(6, 1, 24 * 30),
  MAX_CACHE_AGE_HOURS: int(24, 1, 24 * 365),
  // Retention, applied by maintenance; off unless set. 0 is refused rather than guessed at (keep none? keep all?).
  RETENTION_KEEP_LAST: optionalInt(1, 1_000_000, 'keep every generation'),
  RETENTION_MAX_AGE_DAYS: optionalInt(1, 36_500, 'keep generations of any age'),
  RETENTION_DRY_RUN: bool(false),
  DOWNLOAD_URL_TTL_SECONDS: int(3600, 1, 7 * 24 * 3600),
  MAX_FILES: int(5000, 1, 100_000),
  MAX_FILE_BYTES: int(10 * MiB, 1, 2 ** 31 - 1),
  MAX_GENERATION_BYTES: int(50 * MiB, 1, 2 ** 31 - 1),
  MAX_REQUEST_BYTES: int(64 * MiB, 1024, 2 ** 31 - 1),
  MAX_METADATA_BYTES: int(64 * 1024, 2, 16 * MiB),
  MAX_PATH_DEPTH: int(32, 1, 128),
  MAX_FOLDERS: int(5000, 1, 100_000),
  CORS_ALLOWED_ORIGINS: optionalString.transform((v) => v ?? '*'),
  LOG_LEVEL: optionalString.pipe(z.enum(['debug', 'info', 'warn', 'error', 'silent']).optional()).transform((v) => v ?? 'info'),
});

export type Config = {
  port: number;
  /** Interface the Node server binds; 0.0.0.0 to serve other machines. */
  host: string;
  publicUrl: string;
  storagePath: string;
  cachePath: string;
  pgliteDataDir: string;
  databaseUrl?: string;
  /** `uploadLimitBytes`: the largest object Supabase Storage takes (the project's global upload limit). */
  supabase: { url?: string; serviceKey?: string; bucket: string; uploadLimitBytes: number };
  useCloudStorage: boolean;
  /**
   * Background uploads at once, how often failed or pending ones are tried again (Node), and how long a drainer's
   * claim on an outbox row lasts unless renewed (it is renewed while the upload runs; a dead drainer's expires).
   */
  uploads: { concurrency: number; retrySeconds: number; leaseSeconds: number };
  /**
   * `jwks`: the signing keys themselves (SUPABASE_JWKS), checked before `jwksUrl` is fetched. `serviceKeys`: every key
   * that identifies the backend, compared byte for byte (undefined when there is none); `supabase.serviceKey` is one.
   */
  auth: { jwtSecret?: string; jwksUrl?: string; jwks?: JSONWebKeySet; downloadTokenSecret?: string; serviceKeys?: string[] };
  cacheTtlHours: number;
  autoCleanupEnabled: boolean;
  cleanupIntervalHours: number;
  maxCacheAgeHours: number;
  /**
   * The operator's retention policy, applied by maintenance (never the newest generation of a project, never a pinned
   * one): keep the newest `keepLast` per project, remove those older than `maxAgeDays`; each off when undefined.
   * `dryRun`: report what would be removed, remove nothing.
   */
  retention: { keepLast?: number; maxAgeDays?: number; dryRun: boolean };
  downloadUrlTtlSeconds: number;
  limits: { maxFiles: number; maxFileBytes: number; maxGenerationBytes: number; maxRequestBytes: number; maxMetadataBytes: number; maxPathDepth: number; maxFolders: number };
  corsAllowedOrigins: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
};

/** Where a Supabase project publishes the keys its user tokens are signed with. */
export const supabaseJwksUrl = (supabaseUrl: string) => `${supabaseUrl.replace(/\/+$/, '')}/auth/v1/.well-known/jwks.json`;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Validates an env record into a Config. Reads nothing else; throws a ConfigError that names every bad key.
 * @example loadConfig({ PORT: '8080', USE_CLOUD_STORAGE: 'false' })
 */
export function loadConfig(env: Env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${String(i.path[0] ?? '?')}: ${i.message}`);
    throw new ConfigError(`[config] invalid environment:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  const legacyKey = e.ACCEPT_LEGACY_SERVICE_ROLE_KEY ? e.SUPABASE_SERVICE_ROLE_KEY : undefined;
  const secretKeys = Object.values(e.SUPABASE_SECRET_KEYS ?? {});
  // The one we send to Storage: the operator's, else the project's secret key, else the legacy service_role JWT. Every
  // one of them identifies the backend: several secret keys may be valid at once while one is being rotated.
  const serviceKey = e.SUPABASE_SERVICE_KEY ?? e.SUPABASE_SECRET_KEYS?.default ?? secretKeys[0] ?? legacyKey;
  const serviceKeys = [...new Set([e.SUPABASE_SERVICE_KEY, ...secretKeys, legacyKey].filter((k): k is string => k !== undefined))];
  if (e.USE_CLOUD_STORAGE) {
    if (!e.SUPABASE_URL) throw new ConfigError('[config] SUPABASE_URL is required when USE_CLOUD_STORAGE=true');
    if (!serviceKey) {
      throw new ConfigError(
        '[config] SUPABASE_SERVICE_KEY (or SUPABASE_SERVICE_ROLE_KEY) is required when USE_CLOUD_STORAGE=true (on Supabase Edge: SUPABASE_SECRET_KEYS)',
      );
    }
    // A generation Storage could never take would save, then fail every upload: say so now, naming both.
    if (e.MAX_GENERATION_BYTES > e.STORAGE_UPLOAD_LIMIT_BYTES) {
      throw new ConfigError(
        `[config] MAX_GENERATION_BYTES (${e.MAX_GENERATION_BYTES}) is over STORAGE_UPLOAD_LIMIT_BYTES (${e.STORAGE_UPLOAD_LIMIT_BYTES}), the largest object your Supabase project takes: lower the first, or raise the project's upload limit and set the second to it`,
      );
    }
  }
  const within = (a: string, b: string) => {
    const [x, y] = [resolve(a), resolve(b)];
    return x === y || x.startsWith(`${y}${sep}`);
  };
  if (within(e.CACHE_PATH, e.STORAGE_PATH) || within(e.STORAGE_PATH, e.CACHE_PATH)) {
    throw new ConfigError('[config] CACHE_PATH must not be STORAGE_PATH or inside it (or contain it): cache cleanup would delete generations');
  }
  if ((e.SUPABASE_JWKS_URL || e.SUPABASE_JWKS) && !e.DOWNLOAD_TOKEN_SECRET && !e.SUPABASE_JWT_SECRET && !serviceKey) {
    throw new ConfigError(
      `[config] DOWNLOAD_TOKEN_SECRET is required with ${e.SUPABASE_JWKS ? 'SUPABASE_JWKS' : 'SUPABASE_JWKS_URL'} alone (a JWKS can verify but not sign download links)`,
    );
  }
  return {
    port: e.PORT,
    host: e.HOST,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    storagePath: e.STORAGE_PATH,
    cachePath: e.CACHE_PATH,
    pgliteDataDir: e.PGLITE_DATA_DIR,
    databaseUrl: e.DATABASE_URL,
    supabase: { url: e.SUPABASE_URL?.replace(/\/+$/, ''), serviceKey, bucket: e.SUPABASE_BUCKET, uploadLimitBytes: e.STORAGE_UPLOAD_LIMIT_BYTES },
    useCloudStorage: e.USE_CLOUD_STORAGE,
    uploads: { concurrency: e.UPLOAD_CONCURRENCY, retrySeconds: e.UPLOAD_RETRY_SECONDS, leaseSeconds: e.OUTBOX_LEASE_SECONDS },
    auth: {
      jwtSecret: e.SUPABASE_JWT_SECRET,
      jwksUrl: e.SUPABASE_JWKS_URL,
      jwks: e.SUPABASE_JWKS,
      downloadTokenSecret: e.DOWNLOAD_TOKEN_SECRET,
      serviceKeys: serviceKeys.length > 0 ? serviceKeys : undefined,
    },
    cacheTtlHours: e.CACHE_TTL_HOURS,
    autoCleanupEnabled: e.AUTO_CLEANUP_ENABLED,
    cleanupIntervalHours: e.CLEANUP_INTERVAL_HOURS,
    maxCacheAgeHours: e.MAX_CACHE_AGE_HOURS,
    retention: { keepLast: e.RETENTION_KEEP_LAST, maxAgeDays: e.RETENTION_MAX_AGE_DAYS, dryRun: e.RETENTION_DRY_RUN },
    downloadUrlTtlSeconds: e.DOWNLOAD_URL_TTL_SECONDS,
    limits: {
      maxFiles: e.MAX_FILES,
      maxFileBytes: e.MAX_FILE_BYTES,
      maxGenerationBytes: e.MAX_GENERATION_BYTES,
      maxRequestBytes: e.MAX_REQUEST_BYTES,
      maxMetadataBytes: e.MAX_METADATA_BYTES,
      maxPathDepth: e.MAX_PATH_DEPTH,
      maxFolders: e.MAX_FOLDERS,
    },
    corsAllowedOrigins: e.CORS_ALLOWED_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean),
    logLevel: e.LOG_LEVEL,
  };
}
