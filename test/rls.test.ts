import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tx } from '../functions/_shared/db/database.ts';
import { appContext, sampleFiles, userToken, type AppContext } from './helpers/context.ts';

// Row-level security, not handler code, keeps users apart. First the policies are exercised in SQL, as each
// role; then the API is shown to leak once RLS is switched off — proof that no handler check is doing the work.

const alice = randomUUID();
const bob = randomUUID();
let ctx: AppContext;
let aliceGen: { id: string; project: string };

const asAlice = <T>(fn: (tx: Tx) => Promise<T>) => ctx.db.asUser({ sub: alice }, fn);
const asBob = <T>(fn: (tx: Tx) => Promise<T>) => ctx.db.asUser({ sub: bob }, fn);
const pgCode = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? 'error');

beforeAll(async () => {
  ctx = await appContext();
  const project = randomUUID();
  const res = await ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${await userToken(alice)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: project, files: sampleFiles(3) }),
  });
  expect(res.status).toBe(201);
  aliceGen = { id: ((await res.json()) as { generation_id: string }).generation_id, project };
});
afterAll(() => ctx.close());

describe('policies, in SQL', () => {
  it('owners see their rows; other users see none', async () => {
    expect(await asAlice((tx) => tx.query('select id from generations where id = $1::uuid', [aliceGen.id]))).toHaveLength(1);
    expect(await asBob((tx) => tx.query('select id from generations where id = $1::uuid', [aliceGen.id]))).toHaveLength(0);
    expect(await asBob((tx) => tx.query('select id from projects where id = $1::uuid', [aliceGen.project]))).toHaveLength(0);
  });

  it('other users cannot delete or update; their statements touch nothing', async () => {
    expect(await asBob((tx) => tx.query('delete from generations where id = $1::uuid returning id', [aliceGen.id]))).toHaveLength(0);
    // users cannot delete projects at all (the API never does)
    expect(await pgCode(asBob((tx) => tx.query('delete from projects where id = $1::uuid returning id', [aliceGen.project])))).toBe('42501');
    // users hold UPDATE on `pinned` alone (tested in retention.test.ts): upload state is the service's to record
    expect(await pgCode(asBob((tx) => tx.query(`update generations set upload_status = 'uploaded' where id = $1::uuid`, [aliceGen.id])))).toBe('42501');
    expect(await pgCode(asAlice((tx) => tx.query(`update generations set upload_status = 'uploaded' where id = $1::uuid`, [aliceGen.id])))).toBe('42501');
    expect(await asAlice((tx) => tx.query('select id from generations where id = $1::uuid', [aliceGen.id]))).toHaveLength(1);
  });

  it("a user can never write into another user's project, under any owner_id", async () => {
    const row = (owner: string, version: number) => [randomUUID(), aliceGen.project, owner, version, 'a'.repeat(64)];
    const insert = `insert into generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
      archive_sha256, content_sha256, manifest, storage_key)
      values ($1::uuid, $2::uuid, $3::uuid, $4::int, 1, 1, 1, $5, $5, '{}', $2::text || '/generations/v' || $4::text || '__' || $1::text || '.tar.gz')`;
    // as himself: the policy allows his own owner_id, the composite key refuses a project he does not own
    expect(await pgCode(asBob((tx) => tx.query(insert, row(bob, 50))))).not.toBe('ok');
    // pretending to be alice: the policy refuses
    expect(await pgCode(asBob((tx) => tx.query(insert, row(alice, 51))))).toBe('42501');
    expect(await pgCode(asBob((tx) => tx.query('insert into projects (id, owner_id) values ($1::uuid, $2::uuid)', [randomUUID(), alice])))).toBe('42501');
    // not even the service role can file a generation under an owner other than the project's
    expect(await pgCode(ctx.db.asService((tx) => tx.query(insert, row(bob, 52))))).toBe('23503');
    // a user cannot forge a row pointing at another project's object, or claim an upload happened
    const forged = `insert into generations (id, project_id, owner_id, version, file_count, total_size_bytes, archive_size_bytes,
      archive_sha256, content_sha256, manifest, storage_key, upload_status) values ($1::uuid, $2::uuid, $3::uuid, 1, 1, 1, 1, $4, $4, '{}', $5, $6)`;
    const bobProject = randomUUID();
    await asBob((tx) => tx.query('insert into projects (id, owner_id) values ($1::uuid, $2::uuid)', [bobProject, bob]));
    const aliceKey = `${aliceGen.project}/generations/v1__${aliceGen.id}.tar.gz`;
    expect(await pgCode(asBob((tx) => tx.query(forged, [randomUUID(), bobProject, bob, 'a'.repeat(64), aliceKey, 'pending'])))).toBe('23514');
    const id = randomUUID();
    expect(await pgCode(asBob((tx) => tx.query(forged, [id, bobProject, bob, 'a'.repeat(64), `${bobProject}/generations/v1__${id}.tar.gz`, 'uploaded'])))).toBe('42501');
    // and cannot delete a project directly (the API never does; it would orphan files)
    expect(await pgCode(asBob((tx) => tx.query('delete from projects where id = $1::uuid', [bobProject])))).toBe('42501');
    expect(await ctx.db.asService((tx) => tx.query('select 1 from generations where project_id = $1::uuid and version >= 50', [aliceGen.project]))).toHaveLength(0);
  });

  it('anon gets nothing at all; the service role sees everything', async () => {
    const asAnon = ctx.db.asOwner(async (tx) => {
      await tx.query(`select set_config('role', 'anon', true)`);
      return tx.query('select * from generations');
    });
    expect(await pgCode(asAnon)).toBe('42501');
    expect(await ctx.db.asService((tx) => tx.query('select id from generations where id = $1::uuid', [aliceGen.id]))).toHaveLength(1);
  });
});

describe('the API relies on RLS, not on handler checks', () => {
  it("bob is refused while RLS is on, and would be served if it were off", async () => {
    const bobToken = await userToken(bob);
    const get = () => ctx.app.request(`http://storage.test/generations/${aliceGen.id}`, { headers: { authorization: `Bearer ${bobToken}` } });
    const list = () => ctx.app.request(`http://storage.test/generations?project_id=${aliceGen.project}`, { headers: { authorization: `Bearer ${bobToken}` } });
    expect((await get()).status).toBe(404);
    expect((await list()).status).toBe(404);

    await ctx.db.asOwner((tx) => tx.exec('alter table generations disable row level security; alter table projects disable row level security;'));
    try {
      expect((await get()).status).toBe(200);
      expect((await list()).status).toBe(200);
    } finally {
      await ctx.db.asOwner((tx) => tx.exec('alter table generations enable row level security; alter table projects enable row level security;'));
    }
    expect((await get()).status).toBe(404);
  });
});
