import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthenticator } from '../functions/_shared/auth/verify-jwt.ts';
import { AppError } from '../functions/_shared/errors.ts';

// Bearer tokens to principals: Supabase user tokens, service_role tokens and the raw service key are accepted;
// every other shape — missing, malformed, expired, forged, anon — is a 401 `unauthorized`. Then the same with
// asymmetric keys served as a JWKS by a real HTTP server.

const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';
const SERVICE_KEY = 'sb_secret_test_service_key_for_local_tests';
const secret = (s = JWT_SECRET) => new TextEncoder().encode(s);
const nowS = () => Math.floor(Date.now() / 1000);
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

const hs256 = (claims: Record<string, unknown>, opts: { secret?: string; exp?: number; sub?: string } = {}) => {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime(opts.exp ?? nowS() + 3600);
  if (opts.sub !== undefined) jwt.setSubject(opts.sub);
  return jwt.sign(secret(opts.secret));
};
const userToken = (sub: string, opts: { secret?: string; exp?: number } = {}) => hs256({ role: 'authenticated', aud: 'authenticated' }, { ...opts, sub });

const authenticate = createAuthenticator({ jwtSecret: JWT_SECRET, serviceKey: SERVICE_KEY });

async function expectUnauthorized(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect([(err as AppError).status, (err as AppError).code]).toEqual([401, 'unauthorized']);
  return err as AppError;
}

describe('createAuthenticator with the HS256 secret', () => {
  it('a user token (role authenticated, uuid sub) is a user, with the id lower-cased', async () => {
    const id = randomUUID();
    const p = await authenticate(`Bearer ${await userToken(id.toUpperCase())}`);
    expect(p.kind).toBe('user');
    if (p.kind !== 'user') throw new Error('unreachable');
    expect(p.userId).toBe(id);
    expect(p.claims.sub).toBe(id);
    expect(p.claims.role).toBe('authenticated');
    // the scheme is case-insensitive and surrounding spaces are tolerated
    expect(await authenticate(`bearer   ${await userToken(id)}  `)).toMatchObject({ kind: 'user', userId: id });
  });

  it('a service_role token is the service', async () => {
    const p = await authenticate(`Bearer ${await hs256({ role: 'service_role' })}`);
    expect(p.kind).toBe('service');
    expect(p.claims.role).toBe('service_role');
  });

  it('the raw service key as bearer is the service', async () => {
    expect(await authenticate(`Bearer ${SERVICE_KEY}`)).toEqual({ kind: 'service', claims: { role: 'service_role' } });
  });

  it('a near-miss of the service key is not the service', async () => {
    for (const k of [SERVICE_KEY.slice(0, -1), `${SERVICE_KEY}x`, SERVICE_KEY.toUpperCase(), `x${SERVICE_KEY.slice(1)}`]) {
      await expectUnauthorized(authenticate(`Bearer ${k}`));
    }
    // and without a service key configured, the key string means nothing
    await expectUnauthorized(createAuthenticator({ jwtSecret: JWT_SECRET })(`Bearer ${SERVICE_KEY}`));
  });

  it.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['Basic credentials', 'Basic x'],
    ['Basic with a real token', 'Basic TOKEN'],
    ['Bearer and nothing', 'Bearer'],
    ['Bearer and spaces', 'Bearer    '],
    ['two tokens', 'Bearer TOKEN TOKEN'],
    ['the bare token, no scheme', 'TOKEN'],
  ])('%s is 401 unauthorized', async (_label, header) => {
    const token = await userToken(randomUUID());
    await expectUnauthorized(authenticate(header?.replaceAll('TOKEN', token)));
  });

  it('an expired token is 401, within a 5 s clock tolerance', async () => {
    const id = randomUUID();
    await expectUnauthorized(authenticate(`Bearer ${await userToken(id, { exp: nowS() - 60 })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'service_role' }, { exp: nowS() - 60 })}`));
    // a second past expiry is still inside the tolerance
    expect(await authenticate(`Bearer ${await userToken(id, { exp: nowS() - 1 })}`)).toMatchObject({ kind: 'user', userId: id });
  });

  it('a token signed with another secret is 401', async () => {
    await expectUnauthorized(authenticate(`Bearer ${await userToken(randomUUID(), { secret: `${JWT_SECRET}-other` })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'service_role' }, { secret: 'another-secret-another-secret-another-secret' })}`));
  });

  it('alg none (header.payload. with no signature) is 401', async () => {
    const claims = { role: 'service_role', sub: randomUUID(), exp: nowS() + 3600 };
    await expectUnauthorized(authenticate(`Bearer ${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`));
    const user = { role: 'authenticated', aud: 'authenticated', sub: randomUUID(), exp: nowS() + 3600 };
    await expectUnauthorized(authenticate(`Bearer ${b64url({ alg: 'none' })}.${b64url(user)}.`));
  });

  it('a tampered payload with the original signature is 401', async () => {
    const token = await userToken(randomUUID());
    const [h, , s] = token.split('.') as [string, string, string];
    const forged = `${h}.${b64url({ role: 'service_role', exp: nowS() + 3600 })}.${s}`;
    await expectUnauthorized(authenticate(`Bearer ${forged}`));
  });

  it('the anon role is 401', async () => {
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'anon' })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'anon' }, { sub: randomUUID() })}`));
  });

  it('a token with no role, or an unknown one, is 401', async () => {
    await expectUnauthorized(authenticate(`Bearer ${await hs256({}, { sub: randomUUID() })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'postgres' }, { sub: randomUUID() })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'supabase_admin' }, { sub: randomUUID() })}`));
  });

  it.each([
    ['not a uuid', 'user-123'],
    ['empty', ''],
    ['a uuid with a suffix', `${randomUUID()}x`],
    ['a uuid with a prefix', ` ${randomUUID()}`],
    ['a uuid without dashes', randomUUID().replaceAll('-', '')],
  ])('authenticated with a sub that is %s is 401', async (_label, sub) => {
    await expectUnauthorized(authenticate(`Bearer ${await userToken(sub)}`));
  });

  it('authenticated without a sub at all is 401', async () => {
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'authenticated', aud: 'authenticated' })}`));
  });

  it('a garbage token is 401', async () => {
    for (const t of ['abc', 'a.b.c', 'a.b', `${b64url({ alg: 'HS256' })}.${b64url({ role: 'service_role' })}.AAAA`]) {
      await expectUnauthorized(authenticate(`Bearer ${t}`));
    }
  });

  it('needs a secret or a JWKS URL', () => {
    expect(() => createAuthenticator({})).toThrow(/a JWT secret or a JWKS URL is required/);
    expect(() => createAuthenticator({ serviceKey: SERVICE_KEY })).toThrow(/required/);
  });
});

describe('createAuthenticator with a JWKS (ES256)', () => {
  let server: Server;
  let jwksUrl: string;
  let requests = 0;
  let privateKey: CryptoKey;
  let otherPrivateKey: CryptoKey;
  const KID = 'test-key-1';

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    otherPrivateKey = (await generateKeyPair('ES256')).privateKey;
    const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'ES256', use: 'sig' };
    server = createServer((req, res) => {
      requests++;
      if (req.url !== '/auth/v1/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const es256 = (key: CryptoKey, claims: Record<string, unknown>, sub?: string, kid = KID) => {
    const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid }).setIssuedAt().setExpirationTime('1h');
    if (sub) jwt.setSubject(sub);
    return jwt.sign(key);
  };

  it('accepts a user token signed with the served key, fetched from the server', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const id = randomUUID();
    const before = requests;
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'authenticated', aud: 'authenticated' }, id)}`)).toMatchObject({ kind: 'user', userId: id });
    expect(requests).toBeGreaterThan(before);
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'service_role' })}`)).toMatchObject({ kind: 'service' });
  });

  it('rejects a token signed with another key, under the same kid or another', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const id = randomUUID();
    await expectUnauthorized(auth(`Bearer ${await es256(otherPrivateKey, { role: 'authenticated', aud: 'authenticated' }, id)}`));
    await expectUnauthorized(auth(`Bearer ${await es256(otherPrivateKey, { role: 'authenticated', aud: 'authenticated' }, id, 'other-kid')}`));
    // the right key still works on the same authenticator: the refusals above are the key's
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'authenticated', aud: 'authenticated' }, id)}`)).toMatchObject({ kind: 'user', userId: id });
  });

  it('with both a JWKS and a legacy secret, accepts tokens signed by either, by their alg', async () => {
    const auth = createAuthenticator({ jwksUrl, jwtSecret: JWT_SECRET });
    const id = randomUUID();
    expect(await auth(`Bearer ${await userToken(id)}`)).toMatchObject({ kind: 'user', userId: id });
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'authenticated' }, id)}`)).toMatchObject({ kind: 'user', userId: id });
    await expectUnauthorized(auth(`Bearer ${await userToken(id, { secret: 'another-secret-that-is-long-enough-0123456789' })}`));
  });

  it('rejects HS256, alg none, anon and expired tokens when verifying against the JWKS alone', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const id = randomUUID();
    await expectUnauthorized(auth(`Bearer ${await userToken(id)}`));
    await expectUnauthorized(auth(`Bearer ${b64url({ alg: 'none', kid: KID })}.${b64url({ role: 'authenticated', sub: id, exp: nowS() + 60 })}.`));
    await expectUnauthorized(auth(`Bearer ${await es256(privateKey, { role: 'anon' })}`));
    const expired = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'ES256', kid: KID })
      .setSubject(id)
      .setIssuedAt(nowS() - 7200)
      .setExpirationTime(nowS() - 3600)
      .sign(privateKey);
    await expectUnauthorized(auth(`Bearer ${expired}`));
  });

  it('still takes the raw service key with a JWKS configured', async () => {
    const auth = createAuthenticator({ jwksUrl, serviceKey: SERVICE_KEY });
    expect(await auth(`Bearer ${SERVICE_KEY}`)).toEqual({ kind: 'service', claims: { role: 'service_role' } });
  });

  it('a JWKS that answers 404, or nothing at all, is 503 auth_unavailable: our fault, not the token\'s', async () => {
    const token = `Bearer ${await es256(privateKey, { role: 'authenticated' }, randomUUID())}`;
    const missing = createAuthenticator({ jwksUrl: jwksUrl.replace('/auth/v1/.well-known/jwks.json', '/missing.json') });
    await expect(missing(token)).rejects.toMatchObject({ status: 503, code: 'auth_unavailable' });
    const closedPort = createAuthenticator({ jwksUrl: 'http://127.0.0.1:1/jwks.json' });
    await expect(closedPort(token)).rejects.toMatchObject({ status: 503, code: 'auth_unavailable' });
  });
});
