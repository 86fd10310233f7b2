import { execFile } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from '../functions/_shared/db/database.ts';
import { openPostgres } from '../functions/_shared/db/postgres-driver.ts';
import { migrateAll } from './helpers/context.ts';
import { scratchDatabase } from './helpers/scratch-db.ts';

// The pgTAP suites in supabase/tests/database (what `supabase test db` runs) against a real PostgreSQL server:
// a fresh database per run, the bootstrap and every migration applied as the servers do, then pg_prove.
// pg_prove's output goes to the console so CI logs list every assertion.

const TESTS_DIR = 'supabase/tests/database';

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const adminUrl = inject('databaseUrl');
const pgProve = onPath('pg_prove');
const skipReason = !adminUrl ? 'no PostgreSQL server (see test/global-setup.ts)' : !pgProve ? 'pg_prove is not on PATH (Debian: libtap-parser-sourcehandler-pgtap-perl)' : '';
if (skipReason) console.warn(`\n!!! test/pgtap.test.ts SKIPPED: ${skipReason}; the pgTAP RLS suites did NOT run !!!\n`);

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

describe.skipIf(!!skipReason)('pgTAP suites (supabase/tests/database) on real PostgreSQL', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let url: string;

  beforeAll(async () => {
    scratch = await scratchDatabase(adminUrl!, 'cb_pgtap');
    url = scratch.url;
    const db = createDatabase(openPostgres(url, { max: 1 }));
    try {
      await migrateAll(db);
    } finally {
      await db.close();
    }
  });

  afterAll(async () => {
    await scratch?.drop();
  });

  it('every suite passes under pg_prove', async () => {
    const files = readdirSync(TESTS_DIR)
      .filter((f) => f.endsWith('.test.sql'))
      .sort()
      .map((f) => join(TESTS_DIR, f));
    // projects, generations, ownership, storage: a lost file must not pass silently
    expect(files.length).toBeGreaterThanOrEqual(4);

    // psql (under pg_prove) takes the whole URL as its dbname; clear PG* variables that could override it.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
    const { code, output } = await run(pgProve!, ['--verbose', '--dbname', url, ...files], env);
    console.log(`\n--- pg_prove --verbose ${files.join(' ')} ---\n${output}--- end of pg_prove (exit ${code}) ---\n`);

    expect(output).toContain('All tests successful');
    expect(code).toBe(0);
  }, 180_000);
});
