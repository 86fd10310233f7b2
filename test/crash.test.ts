import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, JWT_SECRET, sampleFiles, tempDir } from './helpers/context.ts';
import { ServerProcess } from './helpers/server-process.ts';
import { startStorageStandIn, type StandIn } from './storage-standin/server.ts';

// kill -9 between the save's answer and its upload, then start again: the upload is finished, nothing lost.

const dir = tempDir();
let standIn: StandIn;
let server: ServerProcess;

beforeAll(async () => {
  standIn = await startStorageStandIn({ jwtSecret: JWT_SECRET });
  server = new ServerProcess({
    PATH: process.env.PATH,
    PORT: String(await freePort()),
    STORAGE_PATH: join(dir.path, 'projects'),
    PGLITE_DATA_DIR: join(dir.path, 'db'),
    CACHE_PATH: join(dir.path, 'cache'),
    SUPABASE_JWT_SECRET: JWT_SECRET,
    USE_CLOUD_STORAGE: 'true',
    SUPABASE_URL: standIn.url,
    SUPABASE_SERVICE_KEY: standIn.serviceKey,
    LOG_LEVEL: 'info',
  });
  await server.start();
}, 90_000);

afterAll(async () => {
  await server.kill();
  await standIn.close();
  dir.remove();
});

describe('a crash between save and upload', () => {
  it('loses nothing: the restarted server uploads and verifies what was pending', async () => {
    const T = { authorization: `Bearer ${await server.token('--service')}` };
    // every upload hangs long enough for the kill to land first
    standIn.faults.delayNext(100, 30_000);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(server.base, {
        method: 'POST',
        headers: { ...T, 'content-type': 'application/json' },
        body: JSON.stringify({ project_id: randomUUID(), owner_id: randomUUID(), files: sampleFiles(4, `${i}`) }),
      });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { generation_id: string; storage: { status: string } };
      expect(body.storage.status).toBe('pending');
      ids.push(body.generation_id);
    }
    await server.kill('SIGKILL');
    standIn.faults.clear();

    await server.start();
    for (const id of ids) {
      let status = '';
      for (let i = 0; i < 100 && status !== 'uploaded'; i++) {
        status = ((await (await fetch(`${server.base}/${id}`, { headers: T })).json()) as { storage: { status: string } }).storage.status;
        if (status !== 'uploaded') await new Promise((r) => setTimeout(r, 100));
      }
      expect(status, id).toBe('uploaded');
    }
    expect(server.output).toContain('"msg":"uploads resumed"');
  }, 90_000);
});
