/** What a query sees: rows as plain objects. Params are positional ($1, $2 …); cast them in SQL ($1::uuid). */
export interface Tx {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements, no params (simple protocol): migrations. */
  exec(sql: string): Promise<void>;
}

/** The minimum a Postgres client must offer; one adapter per client (PGlite, postgres.js). */
export interface Driver {
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Claims as Supabase's PostgREST hands them to Postgres in `request.jwt.claims`. */
export interface JwtClaims {
  sub?: string;
  role?: string;
  [claim: string]: unknown;
}

/**
 * The database as this service uses it. Every query runs in a transaction with an explicit role:
 * `asUser` exactly as PostgREST does for a user's request (role `authenticated` + `request.jwt.claims`),
 * so row-level security decides; `asService` as `service_role`, the one privileged path, named at each call.
 */
export interface Database {
  asUser<T>(claims: JwtClaims, fn: (tx: Tx) => Promise<T>): Promise<T>;
  asService<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** The connection's own role (owner/superuser): migrations and bootstrap only. */
  asOwner<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Runs `fn` as service_role inside a transaction begun as another role, then returns to that role. For the one
 * service-only write a user's request makes: its save stores the archive in the upload outbox, in the same
 * transaction as the row RLS let it insert. If `fn` throws, the transaction is aborted anyway.
 */
export async function asServiceWithin<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
  const [row] = await tx.query<{ role: string }>(`select current_setting('role') as role, set_config('role', 'service_role', true)`);
  const result = await fn();
  await tx.query(`select set_config('role', $1, true)`, [row!.role]);
  return result;
}

export function createDatabase(driver: Driver): Database {
  const asRole = <T>(role: string, claims: JwtClaims, fn: (tx: Tx) => Promise<T>) =>
    driver.transaction(async (tx) => {
      await tx.query(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [role, JSON.stringify(claims)]);
      return fn(tx);
    });
  return {
    asUser: (claims, fn) => {
      if (!claims.sub) throw new Error('[db] asUser needs claims with a sub');
      return asRole('authenticated', { ...claims, role: 'authenticated' }, fn);
    },
    asService: (fn) => asRole('service_role', { role: 'service_role' }, fn),
    asOwner: (fn) => driver.transaction(fn),
    close: () => driver.close(),
  };
}
