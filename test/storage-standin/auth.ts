import { SignJWT, jwtVerify, type JWTPayload } from 'jose';
import { ERRORS } from './errors.ts';

/** Who is asking: `service_role` bypasses RLS; `authenticated` is subject to the policies; `anon` (or no valid JWT on the routes that allow it) sees only public buckets. */
export type Caller = { role: 'service_role' } | { role: 'authenticated'; sub: string } | { role: 'anon' };

/** HS256 JWTs with the project secret: bearer tokens in, signed-URL tokens out. Uses jose, as the real server does (its error messages are jose's). */
export class Jwt {
  private readonly key: Uint8Array;

  constructor(
    secret: string,
    private readonly now: () => number,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  sign(payload: JWTPayload, expiresInSeconds: number): Promise<string> {
    const iat = Math.floor(this.now() / 1000);
    return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(iat).setExpirationTime(iat + expiresInSeconds).sign(this.key);
  }

  /** Throws jose's error (its message is what the real server puts in its bodies). */
  async verify(token: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], currentDate: new Date(this.now()) });
    return payload;
  }

  /**
   * The bearer JWT as the real server's jwt plugin reads it. Invalid or missing -> AccessDenied (403 in the body,
   * jose's message), except on routes with `allowInvalidJwt`, where the caller becomes `anon`.
   */
  async caller(authorization: string | undefined, allowInvalidJwt: boolean): Promise<Caller> {
    const token = (authorization ?? '').replace(/^Bearer\s+/i, '');
    if (!token && allowInvalidJwt) return { role: 'anon' };
    try {
      const payload = await this.verify(token);
      if (payload.role === 'service_role') return { role: 'service_role' };
      if (payload.role === 'authenticated' && typeof payload.sub === 'string') return { role: 'authenticated', sub: payload.sub };
      return { role: 'anon' };
    } catch (e) {
      if (allowInvalidJwt) return { role: 'anon' };
      throw ERRORS.accessDenied((e as Error).message);
    }
  }

  /** A signed-URL token; bad or expired -> InvalidJWT with jose's message. */
  async verifySigned(token: string): Promise<JWTPayload> {
    try {
      return await this.verify(token);
    } catch (e) {
      throw ERRORS.invalidJwt((e as Error).message);
    }
  }
}
