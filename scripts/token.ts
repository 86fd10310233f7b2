// `npm run token -- --user <uuid> [--ttl 3600]` or `--service`: mints a local token and prints only the token.
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { ConfigError, loadConfig } from '../functions/_shared/config.ts';
import { loadDotEnv, resolveJwtSecret } from './local-env.ts';

const usage = 'usage: npm run token -- --user <uuid> [--ttl <seconds>]   |   npm run token -- --service [--ttl <seconds>]';

try {
  loadDotEnv();
  const { values } = parseArgs({ options: { user: { type: 'string' }, service: { type: 'boolean' }, ttl: { type: 'string', default: '3600' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 1) throw new Error(`--ttl must be a positive whole number of seconds\n${usage}`);
  if (Boolean(values.user) === Boolean(values.service)) throw new Error(`give exactly one of --user <uuid> or --service\n${usage}`);
  if (values.user && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(values.user)) {
    throw new Error(`--user must be a UUID, got "${values.user}"`);
  }
  const { secret } = resolveJwtSecret(loadConfig(process.env));
  if (!secret) throw new Error('tokens can only be minted with an HS256 secret (SUPABASE_JWKS_URL is set: use your Supabase project to sign in)');
  const claims = values.service ? { role: 'service_role' } : { role: 'authenticated', aud: 'authenticated' };
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime(`${ttl}s`).setIssuer('codebegen-storage/local');
  if (values.user) jwt.setSubject(values.user.toLowerCase());
  console.log(await jwt.sign(new TextEncoder().encode(secret)));
} catch (err) {
  console.error(err instanceof ConfigError || err instanceof Error ? err.message : err);
  process.exit(2);
}
