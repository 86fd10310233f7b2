import type { JwtClaims } from '../db/database.ts';

/** Who is calling: a user (RLS applies) or CodebeGen's backend with the service key (may act for any owner). */
export type Principal = { kind: 'user'; userId: string; claims: JwtClaims } | { kind: 'service'; claims: JwtClaims };
