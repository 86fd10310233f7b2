import { randomUUID } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { sampleFiles, serviceToken, userToken, type AppContext } from './helpers/context.ts';
import type { StandIn } from './storage-standin/server.ts';

// Deletes that cannot half-happen: the row and a tombstone commit together; every copy (bucket object, local
// copy, cache entry) is removed after the commit, and whatever cannot be removed then is finished later by the
// drain or maintenance. Real PGlite, real files, the Storage stand-in.

const alice = randomUUID();
let standIn: StandIn;
let ctx: AppContext;
let close: () => Promise<void>;
let A: string;

beforeAll(async () => {
  ({ ctx, standIn, close } = await cloudAppContext());
  A = await userToken(alice);
});
afterAll(() => close());
beforeEach(() => standIn.faults.clear());

type Saved = { generation_id: string; project_id: string; version: number };
async function save(): Promise<Saved> {
  const res = await ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(4, randomUUID()) }),
  });
  expect(res.status).toBe(201);
  const g = (await res.json()) as Saved;
  await ctx.uploads!.idle();
  return g;
}
const del = (id: string) => ctx.app.request(`http://storage.test/generations/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${A}` } });
const dirOf = (g: Saved) => join(ctx.config.storagePath, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
const objectOf = (g: Saved) => standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz`);
const tombstones = async () => Number((await ctx.db.asService((tx) => tx.query<{ n: number }>('select count(*)::int as n from codebegen_private.pending_deletions')))[0]!.n);

describe('deletes', () => {
  it('remove every copy at once when they can, leaving no tombstone', async () => {
    const g = await save();
    expect(existsSync(objectOf(g))).toBe(true);
    expect((await del(g.generation_id)).status).toBe(204);
    expect(existsSync(dirOf(g))).toBe(false);
    expect(existsSync(`${dirOf(g)}.tar.gz`)).toBe(false);
    expect(existsSync(objectOf(g))).toBe(false);
    expect(await tombstones()).toBe(0);
  });

  it('whose local copy cannot be removed answer 204, the row is gone, and the drain finishes the copy later', async () => {
    const g = await save();
    // A real failure: the store's scratch folder cannot be created, so nothing can be moved aside and removed.
    const scratch = join(ctx.config.storagePath, '.codebegen-tmp');
    rmSync(scratch, { recursive: true, force: true });
    writeFileSync(scratch, 'not a folder');
    try {
      expect((await del(g.generation_id)).status).toBe(204);
      expect((await ctx.app.request(`http://storage.test/generations/${g.generation_id}`, { headers: { authorization: `Bearer ${A}` } })).status).toBe(404);
      expect(existsSync(dirOf(g))).toBe(true);
      expect(await tombstones()).toBe(1);
    } finally {
      rmSync(scratch, { force: true });
    }
    ctx.clock.offset += 60_000;
    const drained = (await (await ctx.maintenanceApp.request('http://storage.test/storage-maintenance/drain', { method: 'POST', headers: { authorization: `Bearer ${await serviceToken()}` } })).json()) as { deletions: { finished: number; pending: number } };
    expect(drained.deletions).toMatchObject({ finished: 1, pending: 0 });
    expect(existsSync(dirOf(g))).toBe(false);
    expect(existsSync(objectOf(g))).toBe(false);
  });

  it('made outside the API (a user deleting through the Data API, as RLS lets them) still leave no object behind', async () => {
    const g = await save();
    await ctx.db.asUser({ sub: alice, role: 'authenticated' }, (tx) => tx.query('delete from public.generations where id = $1::uuid', [g.generation_id]));
    expect(await tombstones()).toBe(1);
    expect(await ctx.deletions.drain()).toMatchObject({ finished: 1, still_failing: 0, pending: 0 });
    expect(existsSync(objectOf(g))).toBe(false);
    expect(existsSync(dirOf(g))).toBe(false);
  });

  it('of a generation saved again under its id elsewhere remove only the deleted copy', async () => {
    const g = await save();
    standIn.faults.failNext(1000, 503);
    expect((await del(g.generation_id)).status).toBe(204); // the object stays for now
    standIn.faults.clear();
    // the same id, saved into another project: another key, another folder
    const again = await ctx.app.request('http://storage.test/generations', {
      method: 'POST',
      headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
      body: JSON.stringify({ project_id: randomUUID(), generation_id: g.generation_id, files: sampleFiles(2, 'again') }),
    });
    expect(again.status).toBe(201);
    const g2 = (await again.json()) as Saved;
    await ctx.uploads!.idle();
    ctx.clock.offset += 60_000;
    expect(await ctx.deletions.drain()).toMatchObject({ finished: 1, pending: 0 });
    expect(existsSync(objectOf(g))).toBe(false);
    expect(existsSync(objectOf(g2))).toBe(true);
    expect(existsSync(dirOf(g2))).toBe(true);
  });
});
