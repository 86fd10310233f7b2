import type { Driver, Tx } from '../../functions/_shared/db/database.ts';

export type DriverFault =
  /** The statement is refused before it runs: the transaction rolls back (a failed UPDATE). */
  | 'before'
  /** The whole transaction commits, then the client is told it failed (a connection lost at COMMIT). */
  | 'after-commit';

/**
 * A real driver (PGlite or postgres.js) with faults injected where a network would put them: the database does
 * exactly what it is told, and only what the client hears back is changed. For the ambiguous-commit and
 * lost-reply cases, which no server misbehaviour can produce on loopback on demand.
 */
export function faultyDriver(inner: Driver) {
  const armed: { match: (sql: string) => boolean; fault: DriverFault; times: number; then?: () => void }[] = [];
  let refuseAll = false;
  const driver: Driver = {
    transaction: async <T>(fn: (tx: Tx) => Promise<T>): Promise<T> => {
      if (refuseAll) throw new Error('connection refused (injected)');
      let fail: { fault: DriverFault; then?: () => void } | undefined;
      const result = await inner.transaction(async (real) => {
        const tx: Tx = {
          exec: (sql) => real.exec(sql),
          query: async (sql, params) => {
            const i = armed.findIndex((a) => a.match(sql));
            if (i >= 0) {
              const a = armed[i]!;
              if (--a.times <= 0) armed.splice(i, 1);
              if (a.fault === 'before') {
                a.then?.();
                throw new Error('connection lost (injected, before the statement ran)');
              }
              fail = a;
            }
            return real.query(sql, params);
          },
        };
        return fn(tx);
      });
      if (fail) {
        fail.then?.();
        throw new Error('connection lost at COMMIT (injected; the server committed)');
      }
      return result;
    },
    close: () => inner.close(),
  };
  return {
    driver,
    /** The next `times` transactions running a statement that `match`es fail as `fault` says; `then` runs as each fails. */
    failOn(match: (sql: string) => boolean, fault: DriverFault, opts: { times?: number; then?: () => void } = {}) {
      armed.push({ match, fault, times: opts.times ?? 1, then: opts.then });
    },
    /** Every transaction fails to start (the database is unreachable) until set back to false. */
    set unreachable(on: boolean) {
      refuseAll = on;
    },
  };
}
