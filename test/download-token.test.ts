import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createDownloadSigner, downloadKey } from '../functions/_shared/auth/download-token.ts';
import { AppError } from '../functions/_shared/errors.ts';

// Signed download links with a clock the test moves: round trip, expiry to the second, and every way a token
// can be wrong — tampered, for another generation, another key, or a user's access token under the same key.

const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';
const AUDIENCE = 'codebegen-storage/download';
const T0 = 1_800_000_000_000; // a whole second, in ms
const TTL = 300;
const SHA = 'ab'.repeat(32); // the archive a link is for

const key = downloadKey({ jwtSecret: JWT_SECRET });
const clockAt = (ms: number) => {
  const clock = { now: ms };
  return { clock, signer: createDownloadSigner(key, TTL, () => clock.now) };
};

const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const unb64url = (s: string) => Buffer.from(s, 'base64url').toString('utf8');

/** The AppError a promise rejects with (fails the test if it resolves or throws something else). */
async function appError(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}
const expectInvalid = async (p: Promise<unknown>) => {
  const e = await appError(p);
  expect([e.status, e.code]).toEqual([401, 'invalid_download_token']);
};

describe('createDownloadSigner', () => {
  it('signs a token that verifies for its generation and gives back the owner', async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const owner = randomUUID();
    const { token, expiresAt } = await signer.sign({ generationId: gid, ownerId: owner, archiveSha256: SHA });
    expect(signer.ttlSeconds).toBe(TTL);
    expect(expiresAt.getTime()).toBe(T0 + TTL * 1000);
    expect(await signer.verify(token, gid)).toEqual({ generationId: gid, ownerId: owner, archiveSha256: SHA });

    // what is inside: HS256, our audience, the generation and owner, iat/exp from the injected clock
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(decodeJwt(token)).toEqual({ gid, sha: SHA, sub: owner, aud: AUDIENCE, iat: T0 / 1000, exp: T0 / 1000 + TTL });
  });

  it('is valid until the last second of its ttl, then 401 download_token_expired', async () => {
    const { clock, signer } = clockAt(T0 + 400); // iat is floored to the second
    const gid = randomUUID();
    const { token, expiresAt } = await signer.sign({ generationId: gid, ownerId: randomUUID(), archiveSha256: SHA });
    expect(expiresAt.getTime()).toBe(T0 + TTL * 1000);

    clock.now = T0 + TTL * 1000 - 1;
    await expect(signer.verify(token, gid)).resolves.toMatchObject({ generationId: gid });

    clock.now = T0 + TTL * 1000;
    const e = await appError(signer.verify(token, gid));
    expect([e.status, e.code]).toEqual([401, 'download_token_expired']);

    clock.now = T0 + 10 * TTL * 1000;
    const late = await appError(signer.verify(token, gid));
    expect([late.status, late.code]).toEqual([401, 'download_token_expired']);

    // moving the clock back makes it valid again: verification really follows the injected clock
    clock.now = T0;
    await expect(signer.verify(token, gid)).resolves.toMatchObject({ generationId: gid });
  });

  it('a tampered payload (another gid, same signature) is 401 invalid_download_token', async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const other = randomUUID();
    const { token } = await signer.sign({ generationId: gid, ownerId: randomUUID(), archiveSha256: SHA });
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(unb64url(p)) as Record<string, unknown>;
    expect(payload.gid).toBe(gid);
    const forged = `${h}.${b64url(JSON.stringify({ ...payload, gid: other }))}.${s}`;
    await expectInvalid(signer.verify(forged, other));
    await expectInvalid(signer.verify(forged, gid));
    // a longer life or another owner, likewise
    await expectInvalid(signer.verify(`${h}.${b64url(JSON.stringify({ ...payload, exp: (payload.exp as number) + 86_400 }))}.${s}`, gid));
    await expectInvalid(signer.verify(`${h}.${b64url(JSON.stringify({ ...payload, sub: randomUUID() }))}.${s}`, gid));
    // a flipped signature
    const flipped = `${h}.${p}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
    await expectInvalid(signer.verify(flipped, gid));
    // the untouched token still verifies (so the failures above are the tampering's)
    await expect(signer.verify(token, gid)).resolves.toMatchObject({ generationId: gid });
  });

  it('a token for another generation is 401 invalid_download_token', async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const { token } = await signer.sign({ generationId: gid, ownerId: randomUUID(), archiveSha256: SHA });
    await expectInvalid(signer.verify(token, randomUUID()));
    await expectInvalid(signer.verify(token, gid.toUpperCase()));
    await expectInvalid(signer.verify(token, ''));
  });

  it('a token signed with another secret is 401 invalid_download_token', async () => {
    const gid = randomUUID();
    const otherSigner = createDownloadSigner(downloadKey({ jwtSecret: `${JWT_SECRET}-other` }), TTL, () => T0);
    const { token } = await otherSigner.sign({ generationId: gid, ownerId: randomUUID(), archiveSha256: SHA });
    await expect(otherSigner.verify(token, gid)).resolves.toMatchObject({ generationId: gid });
    await expectInvalid(clockAt(T0).signer.verify(token, gid));
  });

  it("a user's access token (aud authenticated) signed with the very same key is refused", async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const jwt = (aud: string | undefined) => {
      const b = new SignJWT({ gid, sha: SHA, role: 'authenticated' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(randomUUID())
        .setIssuedAt(T0 / 1000)
        .setExpirationTime(T0 / 1000 + 3600);
      return (aud ? b.setAudience(aud) : b).sign(key);
    };
    await expectInvalid(signer.verify(await jwt('authenticated'), gid));
    await expectInvalid(signer.verify(await jwt(undefined), gid));
    // the same token with our audience is accepted: the audience is what refused it above
    await expect(signer.verify(await jwt(AUDIENCE), gid)).resolves.toMatchObject({ generationId: gid });
  });

  it('refuses a token without an owner, with alg none, and garbage', async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const noSub = await new SignJWT({ gid }).setProtectedHeader({ alg: 'HS256' }).setAudience(AUDIENCE).setIssuedAt(T0 / 1000).setExpirationTime(T0 / 1000 + 60).sign(key);
    await expectInvalid(signer.verify(noSub, gid));
    const none = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify({ gid, sub: randomUUID(), aud: AUDIENCE, exp: T0 / 1000 + 60 }))}.`;
    await expectInvalid(signer.verify(none, gid));
    for (const junk of ['', 'not-a-token', 'a.b.c', '...']) await expectInvalid(signer.verify(junk, gid));
  });

  it("a user's HS256 access token signed with the raw JWT secret is refused (the key is derived, not the secret)", async () => {
    const { signer } = clockAt(T0);
    const gid = randomUUID();
    const token = await new SignJWT({ gid })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(randomUUID())
      .setAudience(AUDIENCE)
      .setIssuedAt(T0 / 1000)
      .setExpirationTime(T0 / 1000 + 60)
      .sign(new TextEncoder().encode(JWT_SECRET));
    await expectInvalid(signer.verify(token, gid));
  });
});

describe('downloadKey', () => {
  const secretBytes = new TextEncoder().encode(JWT_SECRET);

  it('derives a 32-byte key from the JWT secret that differs from the secret and is stable', () => {
    const a = downloadKey({ jwtSecret: JWT_SECRET });
    const b = downloadKey({ jwtSecret: JWT_SECRET });
    expect(a).toBeInstanceOf(Uint8Array);
    expect(a.byteLength).toBe(32);
    expect(Buffer.from(a).equals(Buffer.from(secretBytes))).toBe(false);
    expect(Buffer.from(a).includes(Buffer.from(secretBytes))).toBe(false);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a).not.toBe(b);
    // pinned: a restart (or another instance) must derive the same key, or every link it signed breaks
    expect(Buffer.from(a).toString('hex')).toBe('46810a10e049403cc314c2739c4cbdaf4ed0dab215a7e853aa5c30259a83b5e2');
    expect(Buffer.from(downloadKey({ jwtSecret: `${JWT_SECRET}x` })).equals(Buffer.from(a))).toBe(false);
  });

  it('uses DOWNLOAD_TOKEN_SECRET as is when given, in preference to the JWT secret', () => {
    const k = downloadKey({ downloadTokenSecret: 'dl-secret-0123456789abcdef0123456789', jwtSecret: JWT_SECRET });
    expect(new TextDecoder().decode(k)).toBe('dl-secret-0123456789abcdef0123456789');
    expect(downloadKey({ downloadTokenSecret: 'dl-secret-0123456789abcdef0123456789' })).toEqual(k);
  });

  it('tokens signed under one key do not verify under the other', async () => {
    const gid = randomUUID();
    const derived = createDownloadSigner(downloadKey({ jwtSecret: JWT_SECRET }), TTL, () => T0);
    const explicit = createDownloadSigner(downloadKey({ downloadTokenSecret: 'dl-secret-0123456789abcdef0123456789', jwtSecret: JWT_SECRET }), TTL, () => T0);
    const { token } = await derived.sign({ generationId: gid, ownerId: randomUUID(), archiveSha256: SHA });
    await expectInvalid(explicit.verify(token, gid));
  });

  it('falls back to a key derived from the service key (what every edge function has), never the key itself', () => {
    const k = downloadKey({ serviceKey: 'sb_secret_abc' });
    expect(Buffer.from(k).toString()).not.toContain('sb_secret_abc');
    expect(k).toEqual(downloadKey({ serviceKey: 'sb_secret_abc' }));
    expect(k).not.toEqual(downloadKey({ serviceKey: 'sb_secret_abd' }));
  });

  it('throws without any secret', () => {
    expect(() => downloadKey({})).toThrow(/DOWNLOAD_TOKEN_SECRET, SUPABASE_JWT_SECRET or the service key is required/);
    expect(() => downloadKey({ jwtSecret: '', downloadTokenSecret: '' })).toThrow(/required/);
    expect(() => downloadKey({ jwtSecret: undefined, downloadTokenSecret: undefined })).toThrow(/required/);
  });
});
