import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Env } from '../functions/_shared/config.ts';
import { edgeConfig } from '../functions/_shared/edge-config.ts';

const SECRET_32 = 'x'.repeat(32);

/** Runs loadConfig(env), which must throw a ConfigError; returns its message. */
function configErrorMessage(env: Env): string {
  let thrown: unknown;
  try {
    loadConfig(env);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected loadConfig to throw').toBeInstanceOf(ConfigError);
  expect((thrown as Error).name).toBe('ConfigError');
  return (thrown as ConfigError).message;
}

describe('loadConfig defaults', () => {
  it('fills every documented default from an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 54321,
      host: '127.0.0.1',
      publicUrl: 'http://localhost:54321',
      storagePath: './storage/projects',
      cachePath: './storage/cache',
      pgliteDataDir: './storage/db',
      useCloudStorage: false,
      autoCleanupEnabled: false,
      cacheTtlHours: 2,
      cleanupIntervalHours: 6,
      maxCacheAgeHours: 24,
      downloadUrlTtlSeconds: 3600,
      corsAllowedOrigins: ['*'],
      logLevel: 'info',
      limits: { maxFiles: 5000, maxFileBytes: 10 * 2 ** 20, maxGenerationBytes: 50 * 2 ** 20, maxRequestBytes: 64 * 2 ** 20, maxMetadataBytes: 64 * 1024 },
    });
    expect(c.supabase).toEqual({ url: undefined, serviceKey: undefined, bucket: 'codebegen-projects', uploadLimitBytes: 52_428_800 });
    expect(c.uploads).toEqual({ concurrency: 4, retrySeconds: 60, leaseSeconds: 60 });
    expect(c.auth).toEqual({ jwtSecret: undefined, jwksUrl: undefined, downloadTokenSecret: undefined });
    expect(c.databaseUrl).toBeUndefined();
  });

  it('treats empty and blank values as unset', () => {
    const c = loadConfig({ PORT: '', STORAGE_PATH: '   ', SUPABASE_BUCKET: '', USE_CLOUD_STORAGE: '', CACHE_TTL_HOURS: ' ', SUPABASE_JWT_SECRET: '' });
    expect(c).toMatchObject({ port: 54321, storagePath: './storage/projects', useCloudStorage: false, cacheTtlHours: 2 });
    expect(c.supabase.bucket).toBe('codebegen-projects');
    expect(c.auth.jwtSecret).toBeUndefined();
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ HOME: '/root', PATH: '/usr/bin', SOMETHING_ELSE: 'x' }).port).toBe(54321);
  });
});

describe('loadConfig values', () => {
  it('reads set values, trims strings and strips trailing slashes from URLs', () => {
    const c = loadConfig({
      PORT: '8080',
      HOST: ' 0.0.0.0 ',
      STORAGE_PATH: '/data/projects',
      PUBLIC_URL: 'https://storage.example.com///',
      SUPABASE_URL: 'https://abc.supabase.co/',
      SUPABASE_BUCKET: 'other-bucket',
      CACHE_TTL_HOURS: '0',
      CLEANUP_INTERVAL_HOURS: '12',
      MAX_CACHE_AGE_HOURS: '48',
      DOWNLOAD_URL_TTL_SECONDS: '60',
      LOG_LEVEL: 'debug',
    });
    expect(c).toMatchObject({ port: 8080, host: '0.0.0.0', storagePath: '/data/projects', publicUrl: 'https://storage.example.com' });
    expect(c).toMatchObject({ cacheTtlHours: 0, cleanupIntervalHours: 12, maxCacheAgeHours: 48, downloadUrlTtlSeconds: 60, logLevel: 'debug' });
    expect(c.supabase).toMatchObject({ url: 'https://abc.supabase.co', bucket: 'other-bucket' });
  });

  it('derives publicUrl from PORT when PUBLIC_URL is unset', () => {
    expect(loadConfig({ PORT: '9999' }).publicUrl).toBe('http://localhost:9999');
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['on', true],
    ['false', false],
    ['0', false],
    ['no', false],
    ['off', false],
  ])('reads USE_CLOUD_STORAGE / AUTO_CLEANUP_ENABLED=%j as %s', (value, expected) => {
    const cloud = { SUPABASE_URL: 'https://abc.supabase.co', SUPABASE_SERVICE_KEY: 'key' };
    const c = loadConfig({ ...cloud, USE_CLOUD_STORAGE: value, AUTO_CLEANUP_ENABLED: value });
    expect(c.useCloudStorage).toBe(expected);
    expect(c.autoCleanupEnabled).toBe(expected);
  });

  it('accepts SUPABASE_SERVICE_ROLE_KEY as the service key', () => {
    const c = loadConfig({ USE_CLOUD_STORAGE: 'true', SUPABASE_URL: 'https://abc.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'role-key' });
    expect(c.useCloudStorage).toBe(true);
    expect(c.supabase.serviceKey).toBe('role-key');
  });

  it('prefers SUPABASE_SERVICE_KEY when both keys are set', () => {
    expect(loadConfig({ SUPABASE_SERVICE_KEY: 'service', SUPABASE_SERVICE_ROLE_KEY: 'role' }).supabase.serviceKey).toBe('service');
  });

  it('accepts a 32-character SUPABASE_JWT_SECRET, or a JWKS URL with a download-token secret', () => {
    expect(loadConfig({ SUPABASE_JWT_SECRET: SECRET_32 }).auth.jwtSecret).toBe(SECRET_32);
    const c = loadConfig({ SUPABASE_JWKS_URL: 'https://abc.supabase.co/auth/v1/.well-known/jwks.json', DOWNLOAD_TOKEN_SECRET: SECRET_32 });
    expect(c.auth).toEqual({ jwtSecret: undefined, jwksUrl: 'https://abc.supabase.co/auth/v1/.well-known/jwks.json', downloadTokenSecret: SECRET_32 });
  });

  it('accepts the PORT bounds 0 and 65535', () => {
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
  });
});

describe('loadConfig CORS_ALLOWED_ORIGINS', () => {
  it.each([
    [undefined, ['*']],
    ['*', ['*']],
    ['https://app.example.com', ['https://app.example.com']],
    ['https://a.example.com,https://b.example.com', ['https://a.example.com', 'https://b.example.com']],
    [' https://a.example.com , http://localhost:3000 ,, ', ['https://a.example.com', 'http://localhost:3000']],
  ])('%j -> %j', (value, expected) => {
    expect(loadConfig({ CORS_ALLOWED_ORIGINS: value }).corsAllowedOrigins).toEqual(expected);
  });
});

describe('loadConfig rejects bad environments with a ConfigError naming the variable', () => {
  it.each([
    ['PORT', 'abc', /PORT: must be a whole number from 0 to 65535, got "abc"/],
    ['PORT', '-1', /PORT: must be a whole number/],
    ['PORT', '65536', /PORT: must be a whole number/],
    ['PORT', '80.5', /PORT: must be a whole number/],
    ['PORT', '1e3', /PORT: must be a whole number/],
    ['PORT', '0x10', /PORT: must be a whole number/],
    ['PUBLIC_URL', 'localhost:8080', /PUBLIC_URL: must be an absolute http\(s\) URL/],
    ['SUPABASE_URL', 'ftp://example.com', /SUPABASE_URL: must be an absolute http\(s\) URL/],
    ['PUBLIC_URL', 'javascript:alert(1)', /PUBLIC_URL: must be an absolute http\(s\) URL/],
    ['CLEANUP_INTERVAL_HOURS', '0', /CLEANUP_INTERVAL_HOURS: must be a whole number from 1/],
    ['DOWNLOAD_URL_TTL_SECONDS', 'soon', /DOWNLOAD_URL_TTL_SECONDS: /],
    ['MAX_FILES', '0', /MAX_FILES: /],
    ['USE_CLOUD_STORAGE', 'maybe', /USE_CLOUD_STORAGE: /],
    ['USE_CLOUD_STORAGE', 'TRUE', /USE_CLOUD_STORAGE: /],
    ['AUTO_CLEANUP_ENABLED', 'enabled', /AUTO_CLEANUP_ENABLED: /],
    ['SUPABASE_JWT_SECRET', 'too-short', /SUPABASE_JWT_SECRET: must be at least 32 characters/],
    ['SUPABASE_JWT_SECRET', 'x'.repeat(31), /SUPABASE_JWT_SECRET: must be at least 32 characters/],
    ['DOWNLOAD_TOKEN_SECRET', 'short', /DOWNLOAD_TOKEN_SECRET: must be at least 32 characters/],
    ['SUPABASE_URL', 'not a url', /SUPABASE_URL: must be an absolute http\(s\) URL/],
    ['PUBLIC_URL', 'http://', /PUBLIC_URL: must be an absolute http\(s\) URL/],
    ['PUBLIC_URL', 'storage example com', /PUBLIC_URL: must be an absolute http\(s\) URL/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL: /],
  ])('%s=%j', (name, value, why) => {
    const message = configErrorMessage({ [name]: value });
    expect(message).toMatch(why);
    expect(message).toContain(name);
  });

  it('names every bad variable at once', () => {
    const message = configErrorMessage({ PORT: 'x', USE_CLOUD_STORAGE: 'perhaps', SUPABASE_JWT_SECRET: 'short' });
    expect(message).toMatch(/PORT: /);
    expect(message).toMatch(/USE_CLOUD_STORAGE: /);
    expect(message).toMatch(/SUPABASE_JWT_SECRET: /);
  });

  it('requires SUPABASE_URL when USE_CLOUD_STORAGE=true', () => {
    expect(configErrorMessage({ USE_CLOUD_STORAGE: 'true', SUPABASE_SERVICE_KEY: 'key' })).toMatch(/SUPABASE_URL is required when USE_CLOUD_STORAGE=true/);
    expect(configErrorMessage({ USE_CLOUD_STORAGE: 'true' })).toMatch(/SUPABASE_URL/);
  });

  it('requires a service key when USE_CLOUD_STORAGE=true', () => {
    const message = configErrorMessage({ USE_CLOUD_STORAGE: 'yes', SUPABASE_URL: 'https://abc.supabase.co' });
    expect(message).toMatch(/SUPABASE_SERVICE_KEY \(or SUPABASE_SERVICE_ROLE_KEY\) is required/);
  });

  it('does not require Supabase settings when cloud storage is off', () => {
    expect(loadConfig({ USE_CLOUD_STORAGE: 'false' }).useCloudStorage).toBe(false);
  });

  it('accepts SUPABASE_JWT_SECRET and SUPABASE_JWKS_URL together (legacy and asymmetric keys side by side)', () => {
    const c = loadConfig({ SUPABASE_JWT_SECRET: SECRET_32, SUPABASE_JWKS_URL: 'https://abc.supabase.co/jwks' });
    expect(c.auth).toMatchObject({ jwtSecret: SECRET_32, jwksUrl: 'https://abc.supabase.co/jwks' });
  });

  it('requires something to sign download links with, given a JWKS URL alone', () => {
    expect(configErrorMessage({ SUPABASE_JWKS_URL: 'https://abc.supabase.co/jwks' })).toMatch(/DOWNLOAD_TOKEN_SECRET is required/);
    expect(loadConfig({ SUPABASE_JWKS_URL: 'https://abc.supabase.co/jwks', SUPABASE_SERVICE_ROLE_KEY: 'sb_secret_x' }).auth.jwksUrl).toBeDefined();
  });
});

describe('loadConfig treats an empty LOG_LEVEL like any empty variable', () => {
  it('falls back to info', () => {
    expect(loadConfig({ LOG_LEVEL: '' }).logLevel).toBe('info');
    expect(loadConfig({ LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
  });
});

describe('loadConfig keeps the cache away from the generations', () => {
  it.each([
    ['the same folder', './storage/projects', './storage/projects'],
    ['the cache inside the store', './storage/projects', './storage/projects/cache'],
    ['the store inside the cache', './storage/projects/x', './storage'],
  ])('refuses %s', (_n, store, cache) => {
    expect(configErrorMessage({ STORAGE_PATH: store, CACHE_PATH: cache })).toMatch(/CACHE_PATH must not be STORAGE_PATH/);
  });
  it('accepts siblings', () => {
    expect(loadConfig({ STORAGE_PATH: './storage/projects', CACHE_PATH: './storage/projects-cache' }).cachePath).toBe('./storage/projects-cache');
  });
});

describe('edgeConfig', () => {
  const platform = { SUPABASE_URL: 'https://ref.supabase.co', SUPABASE_DB_URL: 'postgres://x@db/postgres', SUPABASE_SERVICE_ROLE_KEY: 'sb_secret_x', USE_CLOUD_STORAGE: 'true' };

  it('bounds saves to what an Edge Function can pack and store (bench/edge-save.ts), unless set otherwise', () => {
    expect(edgeConfig(platform).limits).toMatchObject({ maxGenerationBytes: 8 * 1024 * 1024, maxFileBytes: 8 * 1024 * 1024, maxRequestBytes: 10 * 1024 * 1024 });
    expect(edgeConfig({ ...platform, MAX_GENERATION_BYTES: '1000' }).limits.maxGenerationBytes).toBe(1000);
  });

  it('refuses cloud off: a worker\'s /tmp is no store', () => {
    expect(() => edgeConfig({ ...platform, USE_CLOUD_STORAGE: 'false' })).toThrow(/USE_CLOUD_STORAGE=true is required/);
  });
});

// What Supabase injects into Edge Functions today, besides the legacy keys: named secret keys and the JWKS itself.
describe('loadConfig SUPABASE_SECRET_KEYS, SUPABASE_JWKS and ACCEPT_LEGACY_SERVICE_ROLE_KEY', () => {
  const jwk = { kty: 'EC', crv: 'P-256', kid: 'k1', alg: 'ES256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
  const cloud = { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: 'https://abc.supabase.co' };

  it('sends the default secret key to Storage, ahead of the legacy service_role key, and accepts every one of them', () => {
    const c = loadConfig({ ...cloud, SUPABASE_SERVICE_ROLE_KEY: 'legacy-jwt', SUPABASE_SECRET_KEYS: '{"automations":"sb_secret_b","default":"sb_secret_a"}' });
    expect(c.supabase.serviceKey).toBe('sb_secret_a');
    expect(c.auth.serviceKeys).toEqual(['sb_secret_b', 'sb_secret_a', 'legacy-jwt']);
    // no "default": the first; an operator's SUPABASE_SERVICE_KEY always wins
    expect(loadConfig({ ...cloud, SUPABASE_SECRET_KEYS: '{"ci":"sb_secret_c"}' }).supabase.serviceKey).toBe('sb_secret_c');
    expect(loadConfig({ ...cloud, SUPABASE_SERVICE_KEY: 'mine', SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}' }).supabase.serviceKey).toBe('mine');
  });

  it('is enough on its own for cloud storage, and leaves the legacy key as before when unset', () => {
    expect(loadConfig({ ...cloud, SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}' }).auth.serviceKeys).toEqual(['sb_secret_a']);
    expect(loadConfig({ ...cloud, SUPABASE_SERVICE_ROLE_KEY: 'legacy-jwt' }).auth.serviceKeys).toEqual(['legacy-jwt']);
    expect(loadConfig({}).auth.serviceKeys).toBeUndefined();
    // blank keys are no keys
    expect(configErrorMessage({ ...cloud, SUPABASE_SECRET_KEYS: '{"default":"  "}' })).toMatch(/is required when USE_CLOUD_STORAGE=true \(on Supabase Edge: SUPABASE_SECRET_KEYS\)/);
  });

  it('ACCEPT_LEGACY_SERVICE_ROLE_KEY=false drops SUPABASE_SERVICE_ROLE_KEY entirely (legacy keys disabled on the dashboard)', () => {
    const c = loadConfig({ ...cloud, ACCEPT_LEGACY_SERVICE_ROLE_KEY: 'false', SUPABASE_SERVICE_ROLE_KEY: 'legacy-jwt', SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}' });
    expect(c.supabase.serviceKey).toBe('sb_secret_a');
    expect(c.auth.serviceKeys).toEqual(['sb_secret_a']);
    expect(configErrorMessage({ ...cloud, ACCEPT_LEGACY_SERVICE_ROLE_KEY: 'false', SUPABASE_SERVICE_ROLE_KEY: 'legacy-jwt' })).toMatch(/is required when USE_CLOUD_STORAGE=true/);
  });

  it('reads SUPABASE_JWKS as {"keys":[…]} or the bare array, and counts it as a JWKS for the download-key check', () => {
    expect(loadConfig({ SUPABASE_JWKS: JSON.stringify({ keys: [jwk] }), DOWNLOAD_TOKEN_SECRET: SECRET_32 }).auth.jwks).toEqual({ keys: [jwk] });
    expect(loadConfig({ SUPABASE_JWKS: JSON.stringify([jwk]), DOWNLOAD_TOKEN_SECRET: SECRET_32 }).auth.jwks).toEqual({ keys: [jwk] });
    expect(configErrorMessage({ SUPABASE_JWKS: JSON.stringify({ keys: [jwk] }) })).toMatch(/DOWNLOAD_TOKEN_SECRET is required with SUPABASE_JWKS alone/);
    expect(loadConfig({ SUPABASE_JWKS: JSON.stringify({ keys: [jwk] }), SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}' }).auth.jwks).toBeDefined();
  });

  it.each([
    ['SUPABASE_SECRET_KEYS', 'sb_secret_plain', /SUPABASE_SECRET_KEYS: must be a JSON object of named keys/],
    ['SUPABASE_SECRET_KEYS', '["sb_secret_a"]', /SUPABASE_SECRET_KEYS: must be a JSON object of named keys/],
    ['SUPABASE_SECRET_KEYS', '{"default":42}', /SUPABASE_SECRET_KEYS: must be a JSON object of named keys/],
    ['SUPABASE_JWKS', 'https://abc.supabase.co/auth/v1/jwks', /SUPABASE_JWKS: must be a JSON Web Key Set/],
    ['SUPABASE_JWKS', '{"keys":[{"kid":"no-kty"}]}', /SUPABASE_JWKS: must be a JSON Web Key Set/],
    ['SUPABASE_JWKS', '{"keys":[{"kty":"EC","d":"private"}]}', /SUPABASE_JWKS: must hold public keys only/],
    ['ACCEPT_LEGACY_SERVICE_ROLE_KEY', 'never', /ACCEPT_LEGACY_SERVICE_ROLE_KEY: /],
  ])('%s=%j is refused, naming the variable', (name, value, why) => {
    const message = configErrorMessage({ [name]: value, DOWNLOAD_TOKEN_SECRET: SECRET_32 });
    expect(message).toMatch(why);
  });

  it('never repeats a secret key in its error', () => {
    expect(configErrorMessage({ SUPABASE_SECRET_KEYS: '{"default":"sb_secret_do_not_print", }' })).not.toContain('do_not_print');
  });
});

describe('edgeConfig with the new keys and the pooler', () => {
  const platform = {
    SUPABASE_URL: 'https://ref.supabase.co',
    SUPABASE_DB_URL: 'postgresql://postgres:pw@db.ref.supabase.co:5432/postgres',
    SUPABASE_SERVICE_ROLE_KEY: 'legacy-jwt',
    SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}',
    SUPABASE_JWKS: '{"keys":[]}',
    USE_CLOUD_STORAGE: 'true',
  };

  it('uses the secret key for Storage, the inline JWKS with the project URL as fallback, and accepts the legacy key too', () => {
    const c = edgeConfig(platform);
    expect(c.supabase.serviceKey).toBe('sb_secret_a');
    expect(c.auth).toMatchObject({ jwks: { keys: [] }, jwksUrl: 'https://ref.supabase.co/auth/v1/.well-known/jwks.json', serviceKeys: ['sb_secret_a', 'legacy-jwt'] });
  });

  it('connects through DATABASE_URL (the transaction pooler, set as a secret) when set, else SUPABASE_DB_URL', () => {
    expect(edgeConfig(platform).databaseUrl).toBe(platform.SUPABASE_DB_URL);
    const pooler = 'postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?sslmode=require';
    expect(edgeConfig({ ...platform, DATABASE_URL: pooler }).databaseUrl).toBe(pooler);
  });
});

describe('loadConfig and the Storage upload limit', () => {
  const cloud = { USE_CLOUD_STORAGE: 'true', SUPABASE_URL: 'https://ref.supabase.co', SUPABASE_SERVICE_KEY: 'sb_secret_x' };
  it('refuses, naming both, a MAX_GENERATION_BYTES over STORAGE_UPLOAD_LIMIT_BYTES with cloud on', () => {
    expect(() => loadConfig({ ...cloud, MAX_GENERATION_BYTES: '60000000' })).toThrow(/MAX_GENERATION_BYTES \(60000000\) is over STORAGE_UPLOAD_LIMIT_BYTES \(52428800\)/);
    expect(loadConfig({ ...cloud, MAX_GENERATION_BYTES: '60000000', STORAGE_UPLOAD_LIMIT_BYTES: '100000000' }).supabase.uploadLimitBytes).toBe(100_000_000);
    expect(loadConfig({ MAX_GENERATION_BYTES: '60000000' }).limits.maxGenerationBytes).toBe(60_000_000); // cloud off: no Storage to fit
  });
});
