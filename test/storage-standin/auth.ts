import { SignJWT, jwtVerify, type JWTPayload } from 'jose';
import { ERRORS } from './errors.ts';

/**
 * Who is asking, as the Postgres role the real server switches to (`set_config('role', <jwt role> || 'anon')`):
 * `service_role` bypasses RLS; `authenticated` is subject to the policies (`sub` is `auth.uid()`, which may be
 * missing); `anon` (no `role` claim, or no valid JWT on the routes that allow it) sees only public buckets. Any other
 * role is not a database role here: the first query made as the caller fails (`unknown`).
 */
export type Caller =
  | { role: 'service_role' }
  | { role: 'authenticated'; sub: string | undefined }
  /** `verified`: a valid JWT (no `role` claim, or `anon`), which read routes treat as authenticated. */
  | { role: 'anon'; verified: boolean }
  | { role: 'unknown'; claimed: string };

/** HS256 JWTs with the project secret: bearer tokens in, signed-URL tokens out. Uses jose, as the real server does (its error messages are jose's). */
export class Jwt {
  private readonly key: Uint8Array;

  constructor(
    secret: string,
    private readonly now: () => number,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  /** The server's own tokens (signed URLs) have the header `{"alg":"HS256"}`; keys minted by Supabase add `typ`. */
  sign(payload: JWTPayload, expiresInSeconds: number, header: { typ?: 'JWT' } = {}): Promise<string> {
    const iat = Math.floor(this.now() / 1000);
    return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', ...header }).setIssuedAt(iat).setExpirationTime(iat + expiresInSeconds).sign(this.key);
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
    if (!token && allowInvalidJwt) return { role: 'anon', verified: false };
    try {
      const payload = await this.verify(token);
      const role = typeof payload.role === 'string' && payload.role ? payload.role : 'anon';
      if (role === 'service_role') return { role };
      if (role === 'anon') return { role, verified: true };
      if (role === 'authenticated') return { role, sub: typeof payload.sub === 'string' ? payload.sub : undefined };
      return { role: 'unknown', claimed: role };
    } catch (e) {
      if (allowInvalidJwt) return { role: 'anon', verified: false };
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
