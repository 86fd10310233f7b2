import { PGlite } from '@electric-sql/pglite';
import type { Driver, Tx } from './database.ts';

/**
 * Embedded Postgres (PGlite, real Postgres in WASM). `dataDir` undefined = in memory.
 * PGlite has one connection, so transactions run one at a time; that is its nature, not ours.
 */
export async function openPGlite(dataDir?: string): Promise<Driver> {
  const db = dataDir ? new PGlite(dataDir) : new PGlite();
  await db.waitReady;
  return {
    transaction: (fn) =>
      db.transaction((t) => {
        const tx: Tx = {
          query: async (sql, params) => (await t.query(sql, params as unknown[])).rows as never[],
          exec: async (sql) => void (await t.exec(sql)),
        };
        return fn(tx);
      }),
    close: () => db.close(),
  };
}
