import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../functions/_shared/auth/principal.ts';
import { claimsProblem, createAuthenticator, MAX_CLAIMS_BYTES, MAX_TOKEN_CHARS, type Authenticate } from '../functions/_shared/auth/verify-jwt.ts';
import { AppError } from '../functions/_shared/errors.ts';

// Bearer tokens to principals: Supabase user tokens, service_role tokens and the raw service key are accepted;
// every other shape — missing, malformed, expired, forged, anon — is a 401 `unauthorized`. Then the same with
// asymmetric keys served as a JWKS by a real HTTP server.

const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';
const SERVICE_KEY = 'sb_secret_test_service_key_for_local_tests';
const secret = (s = JWT_SECRET) => new TextEncoder().encode(s);
const nowS = () => Math.floor(Date.now() / 1000);
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
const b64text = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
/** An HS256 JWS over any header and payload JSON text: what SignJWT refuses to build (alg 123, a NUL key…). */
const rawHs256 = (headerJson: string, payloadJson: string, key = JWT_SECRET) => {
  const input = `${b64text(headerJson)}.${b64text(payloadJson)}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
};
/** The same with ES256 (WebCrypto's r||s is exactly the JWS signature). */
const rawEs256 = async (headerJson: string, payloadJson: string, key: CryptoKey) => {
  const input = `${b64text(headerJson)}.${b64text(payloadJson)}`;
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
};
const userClaims = (extra: Record<string, unknown> = {}) => ({ role: 'authenticated', aud: 'authenticated', sub: randomUUID(), exp: nowS() + 3600, ...extra });
/** How many random inputs the property test tries: a few hundred in `npm test`, more on demand (`FUZZ_RUNS=100000`). */
const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 500);
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** A JWKS served over real HTTP, counting its requests. */
async function serveJwks(keys: JWK[]): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    if (req.url !== '/auth/v1/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`,
    requests: () => requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

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

// Issue 13: every reproduction below was a 500, or an acceptance, before the verifier checked headers and claims.
describe('createAuthenticator with malformed or unsafe tokens: 401 unauthorized, never a 500', () => {
  it.each([
    ['a number', 123],
    ['an array', ['HS256']],
    ['an object', { name: 'HS256' }],
    ['null', null],
    ['true', true],
  ])('a header whose alg is %s is 401, signed or not, with no secret needed', async (_label, alg) => {
    const header = JSON.stringify({ alg, typ: 'JWT' });
    await expectUnauthorized(authenticate(`Bearer ${rawHs256(header, JSON.stringify(userClaims()))}`));
    await expectUnauthorized(authenticate(`Bearer ${b64text(header)}.${b64url(userClaims())}.AAAA`));
  });

  it('a header that is not a JSON object, or whose kid is not a string, is 401', async () => {
    for (const header of ['123', '"HS256"', '["HS256"]', 'null', '{"alg":"HS256"', JSON.stringify({ alg: 'HS256', kid: 7 }), JSON.stringify({ alg: 'HS256', kid: ['k'] })]) {
      await expectUnauthorized(authenticate(`Bearer ${rawHs256(header, JSON.stringify(userClaims()))}`));
    }
  });

  it.each([
    ['a NUL in a value', { user_metadata: { name: 'a\u0000b' } }],
    ['a NUL in a key', { user_metadata: { 'a\u0000b': 1 } }],
    ['a NUL in a claim name', { 'x\u0000': 1 }],
    ['an unpaired high surrogate in a value', { email: 'x\ud800@example.com' }],
    ['an unpaired low surrogate in a key', { app_metadata: { '\udc00': true } }],
    ['an unpaired surrogate deep in an array', { amr: [{ method: ['\udbff'] }] }],
  ])('a validly signed user token with %s is 401, before its claims can reach Postgres', async (_label, extra) => {
    const err = await expectUnauthorized(authenticate(`Bearer ${rawHs256('{"alg":"HS256","typ":"JWT"}', JSON.stringify(userClaims(extra)))}`));
    expect(err.message).toMatch(/claims are not acceptable/);
    // the same claims on a service_role token are refused too
    const service = { role: 'service_role', exp: nowS() + 3600, ...extra };
    await expectUnauthorized(authenticate(`Bearer ${rawHs256('{"alg":"HS256"}', JSON.stringify(service))}`));
  });

  it('a validly signed token nested 5,500 deep is 401; 32 levels from the claims root is the most accepted', async () => {
    const withDepth = (n: number) => rawHs256('{"alg":"HS256"}', JSON.stringify(userClaims()).replace(/}$/, `,"user_metadata":${nested(n)}}`));
    const err = await expectUnauthorized(authenticate(`Bearer ${withDepth(5500)}`));
    expect(err.message).toMatch(/nested deeper than 32 levels/);
    await expectUnauthorized(authenticate(`Bearer ${withDepth(33)}`));
    expect(await authenticate(`Bearer ${withDepth(32)}`)).toMatchObject({ kind: 'user' });
  });

  it(`claims up to ${MAX_CLAIMS_BYTES} UTF-8 bytes are accepted, one more is 401; a token over ${MAX_TOKEN_CHARS} characters is 401`, async () => {
    const claims = userClaims({ user_metadata: { bio: '' } });
    const room = MAX_CLAIMS_BYTES - JSON.stringify(claims).length;
    // astral characters: 4 bytes, 2 UTF-16 units — the bound is on bytes, as Postgres stores them
    const bio = '\u{1F600}'.repeat(Math.floor(room / 4)) + 'x'.repeat(room % 4);
    const at = (b: string) => rawHs256('{"alg":"HS256"}', JSON.stringify({ ...claims, user_metadata: { bio: b } }));
    const p = await authenticate(`Bearer ${at(bio)}`);
    expect(new TextEncoder().encode(JSON.stringify(p.claims)).byteLength).toBe(MAX_CLAIMS_BYTES);
    const err = await expectUnauthorized(authenticate(`Bearer ${at(`${bio}x`)}`));
    expect(err.message).toMatch(/larger than/);
    const huge = rawHs256('{"alg":"HS256"}', JSON.stringify(userClaims({ bio: 'x'.repeat(MAX_TOKEN_CHARS) })));
    expect((await expectUnauthorized(authenticate(`Bearer ${huge}`))).message).toMatch(/longer than/);
  });

  it('a user token whose aud names another service, or has no aud, is 401; an aud that includes authenticated is a user', async () => {
    const id = randomUUID();
    for (const aud of ['other-service', ['other-service'], [], 'Authenticated', ['authenticated ', 'x'], [1, 'authenticated'], { aud: 'authenticated' }, 1]) {
      await expectUnauthorized(authenticate(`Bearer ${rawHs256('{"alg":"HS256"}', JSON.stringify(userClaims({ aud, sub: id })))}`));
    }
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'authenticated' }, { sub: id })}`));
    for (const aud of ['authenticated', ['other-service', 'authenticated']]) {
      expect(await authenticate(`Bearer ${await hs256({ role: 'authenticated', aud }, { sub: id })}`)).toMatchObject({ kind: 'user', userId: id });
    }
  });

  it('a service_role token whose aud names another service is 401; without an aud, or with authenticated, it is the service', async () => {
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'service_role', aud: 'other-service' })}`));
    await expectUnauthorized(authenticate(`Bearer ${await hs256({ role: 'service_role', aud: ['other-service'] })}`));
    expect(await authenticate(`Bearer ${await hs256({ role: 'service_role' })}`)).toMatchObject({ kind: 'service' });
    expect(await authenticate(`Bearer ${await hs256({ role: 'service_role', aud: 'authenticated' })}`)).toMatchObject({ kind: 'service' });
  });

  it('a user or service token without exp is 401, and so is an exp that is not a number', async () => {
    const id = randomUUID();
    const noExp = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().sign(secret());
    const err = await expectUnauthorized(authenticate(`Bearer ${await noExp({ role: 'authenticated', aud: 'authenticated', sub: id })}`));
    expect(err.message).toMatch(/no expiry/);
    await expectUnauthorized(authenticate(`Bearer ${await noExp({ role: 'service_role' })}`));
    for (const exp of [String(nowS() + 3600), null, [nowS() + 3600]]) {
      await expectUnauthorized(authenticate(`Bearer ${rawHs256('{"alg":"HS256"}', JSON.stringify(userClaims({ exp, sub: id })))}`));
    }
  });

  it('tokens exactly as Supabase issues them keep working: a user access token and the legacy service_role key', async () => {
    const id = randomUUID();
    const t = nowS();
    const access = {
      aud: 'authenticated', exp: t + 3600, iat: t, iss: 'https://abcdefghijklmnopqrst.supabase.co/auth/v1', sub: id, email: 'ada@example.com', phone: '',
      app_metadata: { provider: 'email', providers: ['email'] }, user_metadata: { email: 'ada@example.com', email_verified: true, phone_verified: false, sub: id },
      role: 'authenticated', aal: 'aal1', amr: [{ method: 'password', timestamp: t }], session_id: randomUUID(), is_anonymous: false,
    };
    const p = await authenticate(`Bearer ${rawHs256('{"alg":"HS256","kid":"zY1Ab2Cd","typ":"JWT"}', JSON.stringify(access))}`);
    expect(p).toEqual({ kind: 'user', userId: id, claims: access });
    // the legacy service_role API key: HS256, iss supabase, a ref, iat and a far exp, no aud
    const legacy = rawHs256('{"alg":"HS256","typ":"JWT"}', JSON.stringify({ iss: 'supabase', ref: 'abcdefghijklmnopqrst', role: 'service_role', iat: 1700000000, exp: 2015576000 }));
    expect(await authenticate(`Bearer ${legacy}`)).toMatchObject({ kind: 'service', claims: { role: 'service_role', ref: 'abcdefghijklmnopqrst' } });
    // and configured as the service key, it is compared as a string, as the opaque sb_secret_ key is
    const byKey = createAuthenticator({ jwtSecret: `${JWT_SECRET}-rotated`, serviceKey: legacy });
    expect(await byKey(`Bearer ${legacy}`)).toEqual({ kind: 'service', claims: { role: 'service_role' } });
  });
});

describe('createAuthenticator with a JWKS (ES256, RS256)', () => {
  let jwksServer: Awaited<ReturnType<typeof serveJwks>>;
  let jwksUrl: string;
  let privateKey: CryptoKey;
  let otherPrivateKey: CryptoKey;
  let rsaPrivateKey: CryptoKey;
  const KID = 'test-key-1';
  const RSA_KID = 'test-rsa-1';

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    otherPrivateKey = (await generateKeyPair('ES256')).privateKey;
    const rsa = await generateKeyPair('RS256');
    rsaPrivateKey = rsa.privateKey;
    jwksServer = await serveJwks([
      { ...(await exportJWK(pair.publicKey)), kid: KID, alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(rsa.publicKey)), kid: RSA_KID, alg: 'RS256', use: 'sig' },
    ]);
    jwksUrl = jwksServer.url;
  });
  afterAll(() => jwksServer.close());

  const es256 = (key: CryptoKey, claims: Record<string, unknown>, sub?: string, kid = KID) => {
    const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid }).setIssuedAt().setExpirationTime('1h');
    if (sub) jwt.setSubject(sub);
    return jwt.sign(key);
  };

  it('accepts a user token signed with the served key, fetched from the server', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const id = randomUUID();
    const before = jwksServer.requests();
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'authenticated', aud: 'authenticated' }, id)}`)).toMatchObject({ kind: 'user', userId: id });
    expect(jwksServer.requests()).toBeGreaterThan(before);
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
    expect(await auth(`Bearer ${await es256(privateKey, { role: 'authenticated', aud: 'authenticated' }, id)}`)).toMatchObject({ kind: 'user', userId: id });
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

  it('accepts RS256 user and service tokens from the same JWKS', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const id = randomUUID();
    const rs256 = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: RSA_KID }).setIssuedAt().setExpirationTime('1h').sign(rsaPrivateKey);
    expect(await auth(`Bearer ${await rs256({ role: 'authenticated', aud: 'authenticated', sub: id })}`)).toMatchObject({ kind: 'user', userId: id });
    expect(await auth(`Bearer ${await rs256({ role: 'service_role' })}`)).toMatchObject({ kind: 'service' });
  });

  it('a header with a non-string alg or kid is 401 with a JWKS alone, not a 500 or a 503', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const claims = JSON.stringify(userClaims());
    for (const header of [{ alg: 123, kid: KID }, { alg: ['ES256'], kid: KID }, { alg: { a: 1 }, kid: KID }, { alg: 'ES256', kid: 123 }, { alg: 'ES256', kid: { k: KID } }]) {
      await expectUnauthorized(auth(`Bearer ${await rawEs256(JSON.stringify(header), claims, privateKey)}`));
    }
  });

  it('a signed ES256 token with unsafe claims, no aud or no exp is 401', async () => {
    const auth = createAuthenticator({ jwksUrl });
    const header = JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: KID });
    expect(await auth(`Bearer ${await rawEs256(header, JSON.stringify(userClaims()), privateKey)}`)).toMatchObject({ kind: 'user' });
    for (const claims of [userClaims({ name: '\u0000' }), userClaims({ name: '\udfff' }), userClaims({ aud: 'other-service' }), userClaims({ aud: undefined }), userClaims({ exp: undefined })]) {
      await expectUnauthorized(auth(`Bearer ${await rawEs256(header, JSON.stringify(claims), privateKey)}`));
    }
  });

  it('property: whatever the header, claims or signature, the answer is a principal or a 401 unauthorized AppError', async () => {
    const auths: Authenticate[] = [
      createAuthenticator({ jwtSecret: JWT_SECRET, serviceKey: SERVICE_KEY }),
      createAuthenticator({ jwksUrl, jwtSecret: JWT_SECRET }),
      createAuthenticator({ jwksUrl }),
    ];
    // strings biased towards what broke Postgres or JSON: NUL, lone surrogates, quotes, line separators
    const unit = fc.oneof(
      { weight: 1, arbitrary: fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff', '"', '\\', '\u2028', '\u{1F600}') },
      { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
    );
    const text = fc.string({ unit, maxLength: 12 });
    const { json } = fc.letrec<{ json: unknown }>((tie) => ({
      json: fc.oneof(
        { maxDepth: 4, depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.integer(),
        fc.double(),
        text,
        fc.array(tie('json'), { maxLength: 3 }),
        fc.dictionary(text, tie('json'), { maxKeys: 3 }),
      ),
    }));
    const mostly = <T,>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 7, arbitrary: good }, { weight: 1, arbitrary: json });
    const time = (from: number, to: number) => fc.integer({ min: from, max: to }).map((d) => nowS() + d);
    const claims = fc.record(
      {
        role: mostly(fc.constantFrom('authenticated', 'service_role', 'anon')),
        sub: mostly(fc.tuple(fc.uuid(), fc.boolean()).map(([u, upper]) => (upper ? u.toUpperCase() : u))),
        aud: mostly(fc.constantFrom<unknown>('authenticated', ['other-service', 'authenticated'], 'other-service')),
        exp: mostly(time(-600, 7200)),
        iat: mostly(time(-7200, 60)),
        nbf: mostly(time(-7200, 60)),
        user_metadata: fc.oneof({ weight: 3, arbitrary: fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }) }, { weight: 1, arbitrary: json }),
      },
      { requiredKeys: ['role', 'sub', 'aud', 'exp'] },
    );
    // mostly a header that matches its signature, so that signed claims get checked; sometimes anything at all
    const ALG = { hs256: 'HS256', 'hs256-other': 'HS256', es256: 'ES256', rs256: 'RS256', garbage: 'ES256', none: 'none' } as const;
    const KIDS = { es256: KID, rs256: RSA_KID } as Record<string, string>;
    const headerFor = (signer: keyof typeof ALG) =>
      fc.oneof(
        { weight: 8, arbitrary: fc.record({ alg: fc.constant(ALG[signer]), typ: mostly(fc.constant('JWT')), kid: fc.constant(KIDS[signer] ?? 'legacy') }, { requiredKeys: ['alg'] }) },
        {
          weight: 1,
          arbitrary: fc.record(
            { alg: mostly(fc.constantFrom('HS256', 'ES256', 'RS256', 'HS512', 'none', 'EdDSA', '')), typ: json, kid: mostly(fc.constantFrom(KID, RSA_KID, 'unknown-kid')), crit: json, b64: json },
            { requiredKeys: [] },
          ),
        },
        { weight: 1, arbitrary: json },
      );
    const signers = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom<keyof typeof ALG>('hs256', 'es256', 'rs256') },
      { weight: 1, arbitrary: fc.constantFrom<keyof typeof ALG>('hs256-other', 'garbage', 'none') },
    );
    const token = signers.chain((signer) =>
      fc.record({
        signer: fc.constant(signer),
        header: fc.oneof({ weight: 8, arbitrary: headerFor(signer).map((h) => JSON.stringify(h) ?? 'null') }, { weight: 1, arbitrary: text }),
        payload: fc.oneof({ weight: 8, arbitrary: mostly(claims).map((c) => JSON.stringify(c) ?? 'null') }, { weight: 1, arbitrary: text }),
        deep: fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 6000 }) }),
        garbage: fc.string({ maxLength: 90 }),
      }),
    );
    const input = fc.oneof(
      { weight: 8, arbitrary: token.map((t) => ({ kind: 'token' as const, ...t })) },
      { weight: 1, arbitrary: fc.option(fc.oneof(fc.string(), text, text.map((s) => `Bearer ${s}`)), { nil: undefined }).map((raw) => ({ kind: 'raw' as const, raw })) },
    );

    const seen = { user: 0, service: 0, refused: 0 };
    const build = async (t: { header: string; payload: string; deep: number | null; signer: string; garbage: string }) => {
      const payload = t.deep && t.payload.endsWith('}') && t.payload.length > 2 ? t.payload.replace(/}$/, `,"deep":${nested(t.deep)}}`) : t.payload;
      const signing = `${b64text(t.header)}.${b64text(payload)}`;
      switch (t.signer) {
        case 'hs256':
          return rawHs256(t.header, payload);
        case 'hs256-other':
          return rawHs256(t.header, payload, `${JWT_SECRET}-other`);
        case 'es256':
          return rawEs256(t.header, payload, privateKey);
        case 'rs256': {
          const sig = await crypto.subtle.sign('RSASSA-PKCS1-v1_5', rsaPrivateKey, new TextEncoder().encode(signing));
          return `${signing}.${Buffer.from(sig).toString('base64url')}`;
        }
        case 'garbage':
          return `${signing}.${t.garbage}`;
        default:
          return `${signing}.`;
      }
    };
    const outcome = async (auth: Authenticate, authorization: string | undefined) => {
      let p: Principal;
      try {
        p = await auth(authorization);
      } catch (err) {
        if (err instanceof AppError && err.status === 401 && err.code === 'unauthorized') return 'refused';
        throw new Error(`not a 401 unauthorized for ${JSON.stringify(authorization?.slice(0, 300))}: ${String(err)}`, { cause: err });
      }
      expect(p.claims.role).toBe(p.kind === 'user' ? 'authenticated' : 'service_role');
      if (p.kind === 'user') {
        expect(p.userId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        expect(p.claims.sub).toBe(p.userId);
        expect([p.claims.aud].flat()).toContain('authenticated');
      }
      // what reaches `request.jwt.claims` is bounded, shallow and valid Unicode
      if (authorization !== `Bearer ${SERVICE_KEY}`) expect(claimsProblem(p.claims)).toBeUndefined();
      return p.kind;
    };

    await fc.assert(
      fc.asyncProperty(input, async (i) => {
        const authorization = i.kind === 'raw' ? i.raw : `Bearer ${await build(i)}`;
        for (const auth of auths) seen[await outcome(auth, authorization)]++;
      }),
      { numRuns: FUZZ_RUNS },
    );
    // the generators reach every outcome, so the property is not vacuously true
    expect(seen.user).toBeGreaterThan(0);
    expect(seen.service).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
  }, Math.max(30_000, FUZZ_RUNS));
});

// Supabase Edge injects the project's keys: SUPABASE_JWKS (the JWKS itself) and SUPABASE_SECRET_KEYS (named sb_secret_
// keys, several valid at once while one is rotated). The same checks apply; only where the keys come from differs.
describe('createAuthenticator with the JWKS inline and several service keys (SUPABASE_JWKS, SUPABASE_SECRET_KEYS)', () => {
  let current: { privateKey: CryptoKey; jwk: JWK };
  let rotatedIn: { privateKey: CryptoKey; jwk: JWK };
  let served: Awaited<ReturnType<typeof serveJwks>>;

  const keyPair = async (kid: string) => {
    const pair = await generateKeyPair('ES256');
    return { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' } };
  };
  const es256 = (key: CryptoKey, kid: string, claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid }).setIssuedAt().setExpirationTime('1h').sign(key);
  const user = (id: string) => ({ role: 'authenticated', aud: 'authenticated', sub: id });

  beforeAll(async () => {
    current = await keyPair('current');
    rotatedIn = await keyPair('rotated-in');
    // the project's JWKS endpoint already publishes a key the worker's SUPABASE_JWKS predates
    served = await serveJwks([current.jwk, rotatedIn.jwk]);
  });
  afterAll(() => served.close());

  it('verifies a user token with the inline JWKS alone, fetching nothing', async () => {
    const auth = createAuthenticator({ jwks: { keys: [current.jwk] } });
    const id = randomUUID();
    expect(await auth(`Bearer ${await es256(current.privateKey, 'current', user(id))}`)).toMatchObject({ kind: 'user', userId: id });
    expect(await auth(`Bearer ${await es256(current.privateKey, 'current', { role: 'service_role' })}`)).toMatchObject({ kind: 'service' });
  });

  it('with the URL as fallback: a key the inline set holds is never fetched, a key it lacks is looked up at the URL', async () => {
    const auth = createAuthenticator({ jwks: { keys: [current.jwk] }, jwksUrl: served.url });
    const id = randomUUID();
    const before = served.requests();
    expect(await auth(`Bearer ${await es256(current.privateKey, 'current', user(id))}`)).toMatchObject({ kind: 'user', userId: id });
    expect(served.requests()).toBe(before);
    expect(await auth(`Bearer ${await es256(rotatedIn.privateKey, 'rotated-in', user(id))}`)).toMatchObject({ kind: 'user', userId: id });
    expect(served.requests()).toBeGreaterThan(before);
  });

  it('refuses what the inline set cannot vouch for: another key under its kid, an unknown kid, HS256, alg none (401, not 503)', async () => {
    const auth = createAuthenticator({ jwks: { keys: [current.jwk] } });
    const id = randomUUID();
    await expectUnauthorized(auth(`Bearer ${await es256(rotatedIn.privateKey, 'current', user(id))}`));
    await expectUnauthorized(auth(`Bearer ${await es256(rotatedIn.privateKey, 'rotated-in', user(id))}`));
    await expectUnauthorized(auth(`Bearer ${await userToken(id)}`));
    await expectUnauthorized(auth(`Bearer ${b64url({ alg: 'none', kid: 'current' })}.${b64url({ ...user(id), exp: nowS() + 60 })}.`));
  });

  it('keeps every claim check: no exp, another aud, unsafe claims, anon are 401', async () => {
    const auth = createAuthenticator({ jwks: { keys: [current.jwk] } });
    const header = JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'current' });
    for (const claims of [userClaims({ exp: undefined }), userClaims({ aud: 'other-service' }), userClaims({ aud: undefined }), userClaims({ name: '\u0000' }), userClaims({ role: 'anon' })]) {
      await expectUnauthorized(auth(`Bearer ${await rawEs256(header, JSON.stringify(claims), current.privateKey)}`));
    }
  });

  it("takes the CLI's local SUPABASE_JWKS, whose oct member (the JWT secret) verifies nothing: HS256 needs jwtSecret", async () => {
    const jwks = { keys: [current.jwk, { kty: 'oct', k: Buffer.from(JWT_SECRET).toString('base64url') }] };
    const id = randomUUID();
    await expectUnauthorized(createAuthenticator({ jwks })(`Bearer ${await userToken(id)}`));
    const both = createAuthenticator({ jwks, jwtSecret: JWT_SECRET });
    expect(await both(`Bearer ${await userToken(id)}`)).toMatchObject({ kind: 'user', userId: id });
    expect(await both(`Bearer ${await es256(current.privateKey, 'current', user(id))}`)).toMatchObject({ kind: 'user', userId: id });
  });

  it('accepts every configured service key byte for byte, and nothing near one', async () => {
    const keys = ['sb_secret_default_key_0123456789abcdef', 'sb_secret_automations_key_0123456789ab'];
    const legacy = 'eyJhbGciOiJIUzI1NiJ9.legacy-service-role.signature';
    const auth = createAuthenticator({ jwtSecret: JWT_SECRET, serviceKey: keys[0], serviceKeys: [...keys, legacy] });
    for (const k of [...keys, legacy]) expect(await auth(`Bearer ${k}`)).toEqual({ kind: 'service', claims: { role: 'service_role' } });
    for (const near of [`${keys[0]}x`, keys[1]!.slice(0, -1), keys[0]!.toUpperCase(), `${keys[0]}${keys[1]}`, 'sb_secret_']) {
      await expectUnauthorized(auth(`Bearer ${near}`));
    }
    // a key removed from the list (rotated out) is refused at once
    await expectUnauthorized(createAuthenticator({ jwtSecret: JWT_SECRET, serviceKeys: [keys[0]!] })(`Bearer ${keys[1]}`));
  });
});
