import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataDirLockedError, lockDataDir } from '../scripts/data-dir-lock.ts';
import { freePort, sampleFiles, tempDir } from './helpers/context.ts';
import { ServerProcess } from './helpers/server-process.ts';

// One writer per embedded database (issue 12): real `scripts/serve.ts` processes and the real migration CLI on one
// PGLITE_DATA_DIR, a holder killed with SIGKILL, processes racing to take over a stale lock, and a taken port.

const execFileP = promisify(execFile);
const tmp = tempDir('codebegen-lock-');
afterAll(() => tmp.remove());

const envFor = async (name: string): Promise<Record<string, string>> => ({
  PATH: process.env.PATH!,
  PORT: String(await freePort()),
  STORAGE_PATH: join(tmp.path, name, 'projects'),
  PGLITE_DATA_DIR: join(tmp.path, name, 'db'),
  CACHE_PATH: join(tmp.path, name, 'cache'),
  LOG_LEVEL: 'warn',
});
const lockOf = (env: Record<string, string>) => `${env.PGLITE_DATA_DIR}.lock`;
const lines = (output: string) => output.split('\n').filter((l) => l.trim());

async function save(server: ServerProcess, auth: Record<string, string>, project: string, label: string): Promise<string> {
  const res = await fetch(server.base, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ project_id: project, files: sampleFiles(3, label) }) });
  expect(res.status, server.output).toBe(201);
  return ((await res.json()) as { generation_id: string }).generation_id;
}

async function listed(server: ServerProcess, auth: Record<string, string>, project: string): Promise<{ generation_id: string; version: number }[]> {
  const res = await fetch(`${server.base}?project_id=${project}`, { headers: auth });
  expect(res.status).toBe(200);
  return ((await res.json()) as { items: { generation_id: string; version: number }[] }).items;
}

/** Every file under `dir` with its size and mtime: proof that a refused process wrote nothing there. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out[p] = `${st.size}:${st.mtimeMs}`;
    }
  };
  walk(dir);
  return out;
}

describe('two processes on one PGLITE_DATA_DIR', () => {
  let env: Record<string, string>;
  let first: ServerProcess;
  let auth: Record<string, string>;
  const project = randomUUID();
  const saved: string[] = [];

  beforeAll(async () => {
    env = await envFor('shared');
    first = await new ServerProcess(env).start();
    auth = { authorization: `Bearer ${await first.token('--user', randomUUID())}` };
  }, 60_000);
  afterAll(async () => {
    await first?.kill();
  });

  it('a second server exits non-zero at once, naming the data dir and the holder pid; the first keeps serving and every row', async () => {
    saved.push(await save(first, auth, project, 'before-1'), await save(first, auth, project, 'before-2'));
    const before = snapshot(env.PGLITE_DATA_DIR!);

    const second = new ServerProcess({ ...env, PORT: String(await freePort()) });
    expect(await second.startRefused()).toBe(1);
    expect(lines(second.output)).toEqual([
      `[db] PGLITE_DATA_DIR ${env.PGLITE_DATA_DIR} is in use by another process (pid ${first.child.pid}, since ${JSON.parse(readFileSync(lockOf(env), 'utf8')).since}): the embedded database takes one process at a time; stop it first, or give this process its own PGLITE_DATA_DIR (or a DATABASE_URL)`,
    ]);
    expect(snapshot(env.PGLITE_DATA_DIR!)).toEqual(before); // refused before touching anything

    saved.push(await save(first, auth, project, 'after-1'), await save(first, auth, project, 'after-2'));
    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);
    expect(existsSync(lockOf(env))).toBe(false); // released on shutdown
    await first.start();
    const items = await listed(first, auth, project);
    expect(items.map((i) => i.generation_id)).toEqual([...saved].reverse());
    expect(items.map((i) => i.version)).toEqual([4, 3, 2, 1]);
  }, 60_000);

  it('the migration CLI, dry run or real, is refused while a server holds the data dir', async () => {
    const before = snapshot(env.PGLITE_DATA_DIR!);
    const cli = (args: string[]) =>
      execFileP(process.execPath, ['--import', 'tsx', 'scripts/migrate-to-supabase.ts', '--default-owner', randomUUID(), '--report', join(tmp.path, 'report.json'), ...args], {
        env: { ...env, SUPABASE_URL: 'http://127.0.0.1:9', SUPABASE_SERVICE_KEY: 'unused' },
      }).then(
        ({ stderr }) => ({ code: 0, stderr }),
        (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
    for (const args of [[], ['--dry-run']]) {
      const run = await cli(args);
      expect(run.code, run.stderr).toBe(1);
      expect(lines(run.stderr)).toEqual([expect.stringMatching(/^\[migration\] stopped: \[db\] PGLITE_DATA_DIR \S+ is in use by another process \(pid \d+,/)]);
      expect(run.stderr).toContain(`PGLITE_DATA_DIR ${env.PGLITE_DATA_DIR} is in use by another process (pid ${first.child.pid},`);
    }
    expect(existsSync(join(tmp.path, 'report.json'))).toBe(false);
    expect(snapshot(env.PGLITE_DATA_DIR!)).toEqual(before);
    expect(await listed(first, auth, project)).toHaveLength(4);
  }, 30_000);
});

describe('a lock left behind', () => {
  it('by a server killed with SIGKILL is taken over by the next start, with every row', async () => {
    const env = await envFor('killed');
    const server = await new ServerProcess(env).start();
    const auth = { authorization: `Bearer ${await server.token('--user', randomUUID())}` };
    const project = randomUUID();
    const id = await save(server, auth, project, 'before the kill');
    const killed = server.child.pid;
    await server.kill('SIGKILL');
    expect(JSON.parse(readFileSync(lockOf(env), 'utf8')).pid).toBe(killed);

    await server.start();
    expect(JSON.parse(readFileSync(lockOf(env), 'utf8')).pid).toBe(server.child.pid);
    expect((await listed(server, auth, project)).map((i) => i.generation_id)).toEqual([id]);
    server.child.kill('SIGTERM');
    expect(await server.exited()).toBe(0);
    expect(existsSync(lockOf(env))).toBe(false);
  }, 60_000);

  describe.skipIf(process.platform !== 'linux')('judged by pid, start time and boot id', () => {
    // A live process that is not the lock's holder, and its start time as /proc tells it.
    let other: ChildProcess;
    let otherStart: string;
    beforeAll(() => {
      other = spawn('sleep', ['60'], { stdio: 'ignore' });
      const stat = readFileSync(`/proc/${other.pid}/stat`, 'utf8');
      otherStart = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    });
    afterAll(() => void other.kill('SIGKILL'));

    const boot = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const forge = (dataDir: string, over: Record<string, unknown>) =>
      writeFileSync(`${dataDir}.lock`, JSON.stringify({ pid: other.pid, start: otherStart, boot: boot(), host: hostname(), nonce: randomBytes(16).toString('hex'), since: 'then', ...over }));

    it('refuses a live holder, another host, and a file it cannot read; takes over a reused pid and an earlier boot', async () => {
      const dataDir = join(tmp.path, 'forged', 'db');
      mkdirSync(join(tmp.path, 'forged'));
      forge(dataDir, {});
      await expect(lockDataDir(dataDir)).rejects.toMatchObject({ name: 'DataDirLockedError', holderPid: other.pid, message: expect.stringContaining(`(pid ${other.pid}, since then)`) });
      forge(dataDir, { host: 'elsewhere', pid: 999_999_999 });
      await expect(lockDataDir(dataDir)).rejects.toThrow(`(pid 999999999 on host elsewhere, since then)`);
      writeFileSync(`${dataDir}.lock`, 'not a lock');
      await expect(lockDataDir(dataDir)).rejects.toThrow(/cannot be read/);

      for (const stale of [{ start: '1' }, { boot: randomUUID() }, { pid: 999_999_999 }]) {
        forge(dataDir, stale);
        const lock = await lockDataDir(dataDir);
        expect(JSON.parse(readFileSync(lock.path, 'utf8')).pid).toBe(process.pid);
        // the same process cannot open it twice either
        await expect(lockDataDir(dataDir)).rejects.toBeInstanceOf(DataDirLockedError);
        await lock.release();
        expect(existsSync(lock.path)).toBe(false);
      }
    });
  });

  it('by a killed holder, raced for by five processes at once: exactly one takes it, the others name the winner', async () => {
    const dataDir = join(tmp.path, 'raced', 'db');
    const module = join(process.cwd(), 'scripts', 'data-dir-lock.ts');
    const code = `
      const { lockDataDir, DataDirLockedError } = await import(${JSON.stringify(`file://${module}`)});
      process.stdout.write('ready\\n');
      process.stdin.once('data', async () => {
        try {
          await lockDataDir(${JSON.stringify(dataDir)});
          process.stdout.write('won ' + process.pid + '\\n');
          setInterval(() => {}, 60_000); // holds it until killed
        } catch (err) {
          process.stdout.write(err instanceof DataDirLockedError ? 'lost ' + err.holderPid + '\\n' : 'error ' + err.message + '\\n');
          process.exit(0);
        }
      });`;
    const contender = () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      const said = (re: RegExp) =>
        new Promise<string>((resolve) => {
          const check = () => {
            const m = out.match(re);
            if (m) resolve(m[0]);
            else child.stdout!.once('data', () => setImmediate(check));
          };
          check();
        });
      return { child, ready: said(/ready\n/), verdict: said(/(won|lost|error) .*\n/) };
    };

    let holder = contender(); // the first holder, killed with the lock held
    await holder.ready;
    holder.child.stdin!.write('go\n');
    expect(await holder.verdict).toBe(`won ${holder.child.pid}\n`);
    for (let round = 0; round < 4; round++) {
      holder.child.kill('SIGKILL');
      await new Promise((r) => holder.child.once('exit', r));
      const racers = Array.from({ length: 5 }, contender);
      await Promise.all(racers.map((r) => r.ready));
      for (const r of racers) r.child.stdin!.write('go\n');
      const verdicts = await Promise.all(racers.map((r) => r.verdict));
      const winners = racers.filter((_, i) => verdicts[i]!.startsWith('won'));
      expect(winners, verdicts.join('')).toHaveLength(1);
      holder = winners[0]!;
      expect(verdicts.filter((v) => v !== `won ${holder.child.pid}\n`)).toEqual(Array(4).fill(`lost ${holder.child.pid}\n`));
      expect(JSON.parse(readFileSync(`${dataDir}.lock`, 'utf8')).pid).toBe(holder.child.pid);
      expect(readdirSync(join(tmp.path, 'raced'))).toEqual(['db.lock']); // no claim or scratch file left
    }
    holder.child.kill('SIGKILL');
  }, 30_000);
});

describe('a port already taken', () => {
  let taken: Server;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    taken = createServer((socket) => socket.destroy()); // accepts and hangs up, so health checks fail fast
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => taken.close(() => resolve())));

  it('stops the server with one line naming the port and PORT, before the data dir is created or locked', async () => {
    const env: Record<string, string> = { ...(await envFor('port')), PORT: String(port) };
    const server = new ServerProcess(env);
    expect(await server.startRefused()).toBe(1);
    expect(lines(server.output)).toEqual([`[server] port ${port} on 127.0.0.1 is already in use: stop what listens there, or set PORT to a free port`]);
    expect(existsSync(env.PGLITE_DATA_DIR!)).toBe(false);
    expect(existsSync(lockOf(env))).toBe(false);
  }, 30_000);
});
