import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../functions/_shared/config.ts';
import { isInside, overlap } from '../functions/_shared/stores/path-guard.ts';
import { startNodeServer } from '../scripts/node-host.ts';
import { appContext, JWT_SECRET, memoryLogger, sampleFiles, userToken } from './helpers/context.ts';

// CACHE_PATH against STORAGE_PATH as the disk sees them: real symlinks in a temp folder, and real bind mounts where
// this machine allows them (root on Linux). Cache expiry through an overlap would delete real generations.

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'codebegen-path-guard-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});
const dir = (...parts: string[]) => {
  const p = join(tmp, ...parts);
  mkdirSync(p, { recursive: true });
  return p;
};

describe('overlap()', () => {
  it('finds nothing between folders that are apart, existing or not, even with a common name prefix', async () => {
    expect(await overlap(dir('projects'), dir('projects-cache'))).toBeUndefined();
    expect(await overlap(join(tmp, 'a', 'not-yet'), join(tmp, 'b', 'not-yet'))).toBeUndefined();
    expect(await overlap(dir('cache'), join(tmp, 'projects'))).toBeUndefined();
  });

  it('finds the same folder and nesting as spelled, whether or not the folders exist', async () => {
    expect(await overlap(dir('projects'), join(tmp, 'projects', '.', ''))).toBe('same');
    expect(await overlap(join(tmp, 'projects', 'cache'), dir('projects'))).toBe('first-inside-second');
    expect(await overlap(join(tmp, 'x'), join(tmp, 'x', 'y', 'z'))).toBe('second-inside-first');
  });

  it('sees through a symlinked CACHE_PATH into STORAGE_PATH, its subfolder, or a folder below it not made yet', async () => {
    const storage = dir('projects');
    symlinkSync(storage, join(tmp, 'cache'));
    expect(await overlap(join(tmp, 'cache'), storage)).toBe('same');
    symlinkSync(dir('projects', 'sub'), join(tmp, 'cache-sub'));
    expect(await overlap(join(tmp, 'cache-sub'), storage)).toBe('first-inside-second');
    expect(await overlap(join(tmp, 'cache', 'later', 'deeper'), storage)).toBe('first-inside-second');
  });

  it('sees the reverse too: STORAGE_PATH a symlink into CACHE_PATH', async () => {
    const cache = dir('cache');
    symlinkSync(dir('cache', 'projects'), join(tmp, 'projects'));
    expect(await overlap(cache, join(tmp, 'projects'))).toBe('second-inside-first');
  });

  it('sees through a symlinked ancestor of either path', async () => {
    const storage = dir('real', 'projects');
    symlinkSync(join(tmp, 'real'), join(tmp, 'alias'));
    expect(await overlap(join(tmp, 'alias', 'projects', 'cache'), storage)).toBe('first-inside-second');
    expect(await overlap(join(tmp, 'alias', 'projects-cache'), storage)).toBeUndefined();
  });

  it('isInside() is one direction only, as the migration needs it', async () => {
    const storage = dir('projects');
    symlinkSync(storage, join(tmp, 'link'));
    expect(await isInside(storage, join(tmp, 'link', 'reports', 'r.json'))).toBe(true);
    expect(await isInside(join(tmp, 'link', 'reports'), storage)).toBe(false);
    expect(await isInside(storage, dir('elsewhere'))).toBe(false);
  });
});

/** Whether `mount --bind` works here (root on Linux, a kernel that lets us): else the bind-mount cases are skipped. */
const canBindMount = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'codebegen-bind-probe-'));
  try {
    mkdirSync(join(probe, 'a'));
    mkdirSync(join(probe, 'b'));
    execFileSync('mount', ['--bind', join(probe, 'a'), join(probe, 'b')], { stdio: 'ignore' });
    execFileSync('umount', [join(probe, 'b')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
if (!canBindMount) console.warn('\n!!! bind-mount cases in test/path-guard.test.ts SKIPPED: need root and `mount --bind` !!!\n');

describe.skipIf(!canBindMount)('overlap() through bind mounts', () => {
  const mounted: string[] = [];
  const bind = (from: string, to: string) => {
    execFileSync('mount', ['--bind', from, to], { stdio: 'ignore' });
    mounted.push(to);
  };
  afterEach(() => {
    for (const m of mounted.splice(0).reverse()) execFileSync('umount', [m], { stdio: 'ignore' });
  });

  it('refuses CACHE_PATH inside a bind mount of STORAGE_PATH (the ancestor chain shares its inode)', async () => {
    const storage = dir('projects');
    bind(storage, dir('mnt'));
    expect(await overlap(join(tmp, 'mnt'), storage)).toBe('same');
    expect(await overlap(join(tmp, 'mnt', 'cache'), storage)).toBe('first-inside-second');
  });

  it('refuses CACHE_PATH that is itself a bind mount of a folder inside STORAGE_PATH (no symlink, no shared ancestor)', async () => {
    const storage = dir('projects');
    bind(dir('projects', 'cache'), dir('cache'));
    expect(await overlap(join(tmp, 'cache'), storage)).toBe('first-inside-second');
    expect(await overlap(join(tmp, 'cache', 'not-yet'), storage)).toBe('first-inside-second');
  });

  it('refuses the reverse: STORAGE_PATH a bind mount of a folder inside CACHE_PATH', async () => {
    const cache = dir('cache');
    bind(dir('cache', 'projects'), dir('projects'));
    expect(await overlap(cache, join(tmp, 'projects'))).toBe('second-inside-first');
  });

  it('lets a bind mount of an unrelated folder pass', async () => {
    const storage = dir('projects');
    bind(dir('elsewhere'), dir('cache'));
    expect(await overlap(join(tmp, 'cache'), storage)).toBeUndefined();
  });
});

describe('the Node host at start-up', () => {
  it('refuses a CACHE_PATH symlinked into STORAGE_PATH with one line naming both, before the database is opened', async () => {
    const storage = dir('projects');
    symlinkSync(dir('projects', 'cache'), join(tmp, 'cache'));
    const env = { STORAGE_PATH: storage, CACHE_PATH: join(tmp, 'cache'), PGLITE_DATA_DIR: join(tmp, 'db'), PORT: '0', SUPABASE_JWT_SECRET: JWT_SECRET };
    const started = startNodeServer(env, { log: memoryLogger() });
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    const message = ((await started.catch((e: unknown) => e)) as Error).message;
    expect(message).toMatch(/CACHE_PATH.*STORAGE_PATH/);
    expect(message).not.toContain('\n');
    expect(existsSync(join(tmp, 'db'))).toBe(false);
  });
});

describe('cache expiry in maintenance', () => {
  it('refuses to remove anything when CACHE_PATH is a symlink to STORAGE_PATH: logs an error, removed 0, generations kept', async () => {
    const storage = dir('projects');
    symlinkSync(storage, join(tmp, 'cache'));
    const ctx = await appContext({ STORAGE_PATH: storage, CACHE_PATH: join(tmp, 'cache'), MAX_CACHE_AGE_HOURS: '1' });
    try {
      const project = randomUUID();
      const auth = { authorization: `Bearer ${await userToken(randomUUID())}` };
      const res = await ctx.app.request('http://storage.test/generations', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ project_id: project, files: sampleFiles(2) }),
      });
      expect(res.status).toBe(201);
      const { generation_id } = (await res.json()) as { generation_id: string };
      const folder = join(storage, project, 'generations', `v1__${generation_id}`);
      const dayAgo = (Date.now() - 24 * 3600_000) / 1000;
      utimesSync(folder, dayAgo, dayAgo); // old enough for the cache's expiry, were it the cache

      const report = await ctx.maintain();
      expect(report.cache).toEqual({ removed: 0, kept: 0 });
      expect(existsSync(folder)).toBe(true);
      expect(existsSync(`${folder}.tar.gz`)).toBe(true);
      expect(ctx.log.lines.some((l) => l.level === 'error' && String(l.msg).startsWith('cache expiry refused'))).toBe(true);
      expect((await ctx.app.request(`http://storage.test/generations/${generation_id}/download`, { headers: auth })).status).toBe(200);
    } finally {
      await ctx.close();
    }
  });
});
