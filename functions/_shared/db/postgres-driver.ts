import postgres from 'postgres';
import type { Driver, Tx } from './database.ts';

/**
 * postgres.js against any Postgres URL. `prepare: false` because Supabase's transaction pooler
 * (port 6543) does not keep prepared statements between transactions.
 */
export function openPostgres(url: string, options: { max?: number } = {}): Driver {
  const sql = postgres(url, { prepare: false, max: options.max ?? 10, onnotice: () => {}, connection: { application_name: 'codebegen-storage' } });
  return {
    transaction: (fn) =>
      sql.begin((t) => {
        const tx: Tx = {
          query: async (q, params) => [...(await t.unsafe(q, (params ?? []) as never[]))] as never[],
          exec: async (q) => void (await t.unsafe(q)),
        };
        return fn(tx);
      }) as never,
    close: () => sql.end({ timeout: 5 }),
  };
}
