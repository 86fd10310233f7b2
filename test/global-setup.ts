import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL of a real PostgreSQL server, or '' when there is none. */
    databaseUrl: string;
    /**
     * The `postgres` database of a throwaway cluster of ours with pg_cron loaded, or ''. Tests may migrate it
     * (pg_cron lives in one database per cluster), so it is never a server someone gave us.
     */
    cronDatabaseUrl: string;
  }
}

/**
 * Gives the suites that need a real PostgreSQL server one: TEST_DATABASE_URL when set, otherwise a throwaway
 * PostgreSQL 15 cluster on a free port when Debian's postgresql-15 is installed. Without either, those suites
 * skip and say so loudly.
 */
export default function setup(project: TestProject) {
  const given = process.env.TEST_DATABASE_URL;
  project.provide('cronDatabaseUrl', '');
  if (given) {
    project.provide('databaseUrl', given);
    return;
  }
  if (!existsSync('/usr/lib/postgresql/15/bin/initdb')) {
    console.warn('\n!!! No PostgreSQL server: suites that need one will SKIP. Install postgresql-15 or set TEST_DATABASE_URL. !!!\n');
    project.provide('databaseUrl', '');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'codebegen-pg.'));
  const url = execFileSync('bash', ['scripts/pg-cluster.sh', 'start', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  console.log(`PostgreSQL 15 for the tests: ${url}`);
  project.provide('databaseUrl', url);
  if (existsSync('/usr/lib/postgresql/15/lib/pg_cron.so')) project.provide('cronDatabaseUrl', url);
  return () => {
    execFileSync('bash', ['scripts/pg-cluster.sh', 'stop', dir], { stdio: 'ignore' });
  };
}
