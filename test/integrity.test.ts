import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { packGeneration } from '../functions/_shared/archive/generation-archive.ts';
import { findGeneration, replaceArchive } from '../functions/_shared/db/generations-repo.ts';
import { unpackLimitsFor } from '../functions/_shared/limits.ts';
import { LocalGenerationStorage } from '../functions/_shared/storage/generation-storage.ts';
import { HybridGenerationStorage } from '../functions/_shared/storage/hybrid-storage.ts';
import { LocalStore } from '../functions/_shared/stores/local-store.ts';
import { cloudAppContext } from './helpers/cloud-context.ts';
import { appContext, sampleFiles, userToken, type AppContext } from './helpers/context.ts';
import { rawEntry, rawTarGz } from './helpers/raw-tar.ts';
import type { StandIn } from './storage-standin/server.ts';

// Every byte served or uploaded is checked against the recorded sha256, on every tier: a local archive that was
// tampered with or truncated is never served nor uploaded, the read falls through to the next good copy, and a
// good bucket copy is never replaced by bad bytes.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const alice = randomUUID();
let A: string;
let standIn: StandIn;
let ctx: AppContext;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ ctx, standIn, close } = await cloudAppContext());
  A = await userToken(alice);
});
afterAll(() => close());
beforeEach(() => standIn.faults.clear());

type Saved = { generation_id: string; project_id: string; version: number; sha256: string };
async function save(c: AppContext = ctx): Promise<Saved> {
  const res = await c.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(5, randomUUID()) }),
  });
  expect(res.status).toBe(201);
  const g = (await res.json()) as Saved;
  await c.uploads?.idle();
  return g;
}
async function download(id: string, c: AppContext = ctx) {
  const res = await c.app.request(`http://storage.test/generations/${id}/download`, { headers: { authorization: `Bearer ${A}` } });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, sha: sha256(bytes), bytes: bytes.byteLength, header: res.headers.get('x-checksum-sha256') };
}
const dirOf = (c: AppContext, g: Saved) => join(c.config.storagePath, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
const flipByte = (path: string, at = 40) => {
  const b = readFileSync(path);
  b[at] = b[at]! ^ 0xff;
  writeFileSync(path, b);
};
const del = (id: string) => ctx.app.request(`http://storage.test/generations/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${A}` } });
const objectOf = (g: Saved) => standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz`);

describe('a local archive that fails its sha256', () => {
  for (const [name, spoil] of [
    ['a flipped byte', (p: string) => flipByte(p)],
    ['truncated to 0 bytes', (p: string) => truncateSync(p, 0)],
  ] as const) {
    it(`(${name}) is never served: the folder packs to the right bytes, or the bucket has them`, async () => {
      const g = await save();
      spoil(`${dirOf(ctx, g)}.tar.gz`);
      expect(await download(g.generation_id)).toMatchObject({ status: 200, sha: g.sha256, header: g.sha256 });
      // set aside for an operator, not deleted, and never read again
      const aside = readdirSync(join(ctx.config.storagePath, '.codebegen-quarantine')).filter((f) => f.startsWith(`${g.project_id}__v1__${g.generation_id}.`));
      expect(aside).toHaveLength(1);
      expect(existsSync(`${dirOf(ctx, g)}.tar.gz`)).toBe(false);
      expect(ctx.log.lines.some((l) => l.msg === 'stored archive does not match its record: set aside, not used' && l.generation_id === g.generation_id)).toBe(true);
      // the folder keeps serving the right bytes
      expect(await download(g.generation_id)).toMatchObject({ status: 200, sha: g.sha256 });
      writeFileSync(`${dirOf(ctx, g)}.tar.gz`, readFileSync(join(ctx.config.storagePath, '.codebegen-quarantine', aside[0]!)));
      // the folder is gone too: the bucket's copy, verified
      rmSync(dirOf(ctx, g), { recursive: true });
      spoil(`${dirOf(ctx, g)}.tar.gz`);
      expect(await download(g.generation_id)).toMatchObject({ status: 200, sha: g.sha256 });
    });
  }

  it('and no good copy anywhere: 502, never the bad bytes', async () => {
    const g = await save();
    rmSync(dirOf(ctx, g), { recursive: true });
    flipByte(`${dirOf(ctx, g)}.tar.gz`);
    rmSync(join(ctx.config.cachePath, g.project_id), { recursive: true, force: true });
    writeFileSync(objectOf(g), 'not the archive');
    const got = await download(g.generation_id);
    expect(got.status).toBe(502);
    expect(got.sha).not.toBe(g.sha256);
  });

  it('is never uploaded, and a good bucket copy is never replaced by bad bytes', async () => {
    standIn.faults.failNext(1000, 503);
    const pending = await save();
    standIn.faults.clear();
    flipByte(`${dirOf(ctx, pending)}.tar.gz`);
    rmSync(dirOf(ctx, pending), { recursive: true }); // no folder to pack again: the outbox has the bytes
    ctx.clock.offset += 60_000;
    expect(await ctx.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 10 })).toMatchObject({ uploaded: 1, failed: 0 });
    expect(sha256(readFileSync(objectOf(pending)))).toBe(pending.sha256);

    // uploaded already; its local archive goes bad; an upload runs again (as after a lost reply): the good object stays
    const done = await save();
    flipByte(`${dirOf(ctx, done)}.tar.gz`);
    await ctx.db.asService(async (tx) => {
      const [{ archive }] = (await tx.query<{ archive: Uint8Array }>('select $1::bytea as archive', [readFileSync(`${dirOf(ctx, done)}.tar.gz`)])) as [{ archive: Uint8Array }];
      // the outbox holds the same bad bytes: nothing good is left on this host
      await tx.query(`update generations set upload_status = 'failed' where id = $1::uuid`, [done.generation_id]);
      await tx.query(`insert into codebegen_private.upload_outbox (generation_id, archive, archive_sha256) values ($1::uuid, $2::bytea, $3)`, [done.generation_id, archive, done.sha256]);
    });
    rmSync(dirOf(ctx, done), { recursive: true });
    expect(await ctx.uploads!.drain({ maxMs: 10_000, maxBytes: 1 << 30, maxRows: 10 })).toMatchObject({ failed: 1 });
    expect(sha256(readFileSync(objectOf(done)))).toBe(done.sha256);
  });
});

describe('cloud off', () => {
  it('a tampered archive beside a good folder is passed over for the folder packed again; both bad is a 500, never the bytes', async () => {
    const off = await appContext();
    try {
      const g = await save(off);
      flipByte(`${dirOf(off, g)}.tar.gz`);
      expect(await download(g.generation_id, off)).toMatchObject({ status: 200, sha: g.sha256 });
      writeFileSync(join(dirOf(off, g), 'source', 'README.md'), 'changed behind our back\n');
      const got = await download(g.generation_id, off);
      expect(got.status).toBe(500);
      expect(got.sha).not.toBe(g.sha256);
    } finally {
      await off.close();
    }
  });

  it('a folder whose archive was recorded by the packer before issue 15 (fflate) and is gone is served with those bytes', async () => {
    const off = await appContext();
    try {
      const g = await save(off);
      const record = (await off.db.asService((tx) => findGeneration(tx, g.generation_id)))!;
      const onDisk = (await off.local.read({ projectId: g.project_id, generationId: g.generation_id, version: g.version }))!;
      const legacy = await packGeneration(record.manifest, onDisk.files, 'legacy');
      expect(legacy.sha256).not.toBe(g.sha256);
      await off.db.asService((tx) => replaceArchive(tx, g.generation_id, legacy.sha256, legacy.bytes.byteLength));
      rmSync(`${dirOf(off, g)}.tar.gz`);
      expect(await download(g.generation_id, off)).toMatchObject({ status: 200, sha: legacy.sha256, header: legacy.sha256 });
    } finally {
      await off.close();
    }
  });
});

describe('concurrent reads', () => {
  it('are joined by the bytes they read, not by id alone: a generation deleted and saved again under its id never gets the old read', async () => {
    const id = randomUUID();
    const post = (project: string, tag: string) =>
      ctx.app.request('http://storage.test/generations', {
        method: 'POST',
        headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
        body: JSON.stringify({ project_id: project, generation_id: id, files: sampleFiles(4, tag) }),
      });
    const oldRes = await post(randomUUID(), 'old');
    expect(oldRes.status).toBe(201);
    const old = (await oldRes.json()) as Saved;
    await ctx.uploads!.idle();
    rmSync(join(ctx.config.storagePath, old.project_id), { recursive: true, force: true });
    rmSync(join(ctx.config.cachePath, old.project_id), { recursive: true, force: true });

    // A slow cold read of the old generation: its download from the bucket is held.
    standIn.faults.delayNext(1, 1_000);
    const slow = download(old.generation_id);
    await new Promise((r) => setTimeout(r, 150));
    // Meanwhile it is deleted and saved again under the same id, with other files, in another project.
    expect((await del(old.generation_id)).status).toBe(204);
    const fresh = (await (await post(randomUUID(), 'new')).json()) as Saved;
    expect(fresh.sha256).not.toBe(old.sha256);
    rmSync(join(ctx.config.storagePath, fresh.project_id), { recursive: true, force: true });
    expect(await download(fresh.generation_id)).toMatchObject({ status: 200, sha: fresh.sha256, header: fresh.sha256 });
    await slow; // whatever the old read ends with, it never answered for the new generation
  });
});

describe('a folder-only generation deleted while it is read', () => {
  it('is no copy, not a copy that failed its check: no integrity error, no false alarm in the log', async () => {
    const off = await appContext();
    try {
      const g = await save(off);
      rmSync(`${dirOf(off, g)}.tar.gz`); // as CodebeGen's Python writes it: a folder, no archive
      const record = (await off.service.get({ kind: 'service', claims: { role: 'service_role' } }, g.generation_id))!;
      // a disk whose folder is deleted right after it was read (half of it, as a delete racing the read would)
      class RacingStore extends LocalStore {
        override async read(...args: Parameters<LocalStore['read']>) {
          const got = await super.read(...args);
          rmSync(dirOf(off, g), { recursive: true, force: true });
          return got && { ...got, files: got.files.slice(0, 1) };
        }
      }
      const storage = new LocalGenerationStorage(new RacingStore(off.config.storagePath), off.log);
      expect(await storage.localArchive(record)).toBeUndefined();
      expect(off.log.lines.some((l) => l.msg === 'archive does not match its record')).toBe(false);
    } finally {
      await off.close();
    }
  });
});

describe('a cache on a full disk', () => {
  it('costs only speed: the verified bytes are checked in memory and served; an archive the unpacker refuses is still refused', async () => {
    const g = await save();
    rmSync(join(ctx.config.storagePath, g.project_id), { recursive: true, force: true });
    const record = (await ctx.db.asService((tx) => findGeneration(tx, g.generation_id)))!;
    class FullDisk extends LocalStore {
      override async writeFilled(): Promise<void> {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
      }
    }
    const storage = new HybridGenerationStorage(new LocalGenerationStorage(ctx.local, ctx.log), new FullDisk(ctx.config.cachePath), ctx.cloud!, ctx.uploads!, ctx.log, {
      cacheTtlMs: 3600_000,
      unpackLimits: unpackLimitsFor(ctx.config.limits),
    });
    expect(sha256(await storage.archive(record))).toBe(g.sha256);
    await vi.waitFor(() => expect(ctx.log.lines.some((l) => l.msg === 'cache not filled (the disk failed)' && l.generation_id === g.generation_id)).toBe(true));
    // bytes that match their record but fail the unpacker (an entry climbing out of the root) are not served
    const hostile = rawTarGz(rawEntry({ name: `v1__${g.generation_id}/source/../../../x`, body: new TextEncoder().encode('x') }));
    writeFileSync(objectOf(g), hostile);
    await ctx.db.asService((tx) => tx.query('update generations set archive_sha256 = $2, archive_size_bytes = $3 where id = $1::uuid', [g.generation_id, sha256(hostile), hostile.byteLength]));
    const spoiled = (await ctx.db.asService((tx) => findGeneration(tx, g.generation_id)))!;
    await expect(storage.archive(spoiled)).rejects.toMatchObject({ status: 422 });
  });
});
