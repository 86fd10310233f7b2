import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, tempDir } from './helpers/context.ts';
import { ServerProcess } from './helpers/server-process.ts';

// The README's quick tour as a newcomer meets it: the real `npm start` (scripts/serve.ts in its own process) on a
// temp dir and a free port, and the real `npm run tour` against it.

const run = promisify(execFile);
const dir = tempDir();
let server: ServerProcess;

beforeAll(async () => {
  server = await new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: join(dir.path, 'projects'),
    PGLITE_DATA_DIR: join(dir.path, 'db'),
    CACHE_PATH: join(dir.path, 'cache'),
    LOG_LEVEL: 'warn',
  }).start();
}, 90_000);

afterAll(async () => {
  await server.kill();
  dir.remove();
});

/** `npm run -s tour` in the server's environment (its port, its local JWT secret); rejects on a non-zero exit. */
const tour = (env: NodeJS.ProcessEnv = {}) => run('npm', ['run', '-s', 'tour'], { env: { ...server.env, HOME: process.env.HOME, ...env } });

describe('npm run tour', () => {
  it('performs every step of the quick tour against the running server, on this Node, and exits 0', async () => {
    const { stdout } = await tour();
    expect(stdout).toContain(`tour of http://localhost:${server.env.PORT}/functions/v1/generations on Node ${process.version}`);
    const steps = [...stdout.matchAll(/^== (\d)\/7 (\w+):/gm)].map((m) => m[2]);
    expect(steps).toEqual(['health', 'token', 'save', 'list', 'download', 'delete', 'gone']);
    for (const line of [' -> 201 ', '/download?token=… -> 200 ', ' -> 204 ', ' -> 404 ']) expect(stdout).toContain(line);
    expect(stdout).not.toMatch(/token=eyJ/); // download tokens are not printed
    expect(stdout).toContain('tour finished: 7 steps, every answer as promised');
  }, 60_000);

  it('exits 1 naming the step and what to do when no server answers', async () => {
    const failed = await tour({ PORT: String(await freePort()) }).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/tour stopped at step 1 \(health\): no answer from .* \(ECONNREFUSED\): is the server running\? Start it with `npm start`/);
  }, 30_000);

  // scripts/test-node-versions.sh sets NODE_UNDER_TEST: proof that vitest's workers (and so the server and the tour,
  // started with process.execPath) really run on the Node asked for, not on the machine's default.
  if (!process.env.NODE_UNDER_TEST) {
    console.warn(`\n!!! test/tour.test.ts "runs on the Node the version script asked for" SKIPPED here: it runs under scripts/test-node-versions.sh (NODE_UNDER_TEST), on Node 22 and 24 !!!\n`);
  }
  it.runIf(process.env.NODE_UNDER_TEST)('runs on the Node the version script asked for', () => {
    console.log(`tour.test.ts ran on Node ${process.version}`);
    expect(process.version).toBe(process.env.NODE_UNDER_TEST);
  });
});
