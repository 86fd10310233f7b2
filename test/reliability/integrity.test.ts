import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cloudAppContext } from '../helpers/cloud-context.ts';
import { sampleFiles, userToken, type AppContext } from '../helpers/context.ts';
import type { StandIn } from '../storage-standin/server.ts';
import { report, sha256 } from './support.ts';

// Reliability 7 — every byte checked. Each copy a generation can be read from — the stored archive, the folder
// packed again, the cache, the upload outbox, the bucket — is spoiled in turn (a flipped byte, a truncation, a
// changed file), alone and together, and the generation is read: the answer is the exact recorded bytes from the
// next good copy, or an error when none is good. Never other bytes, and no row is lost.

const flip = (path: string, at = 40) => {
  const b = readFileSync(path);
  const i = Math.min(at, b.length - 1);
  b[i] = b[i]! ^ 0xff;
  writeFileSync(path, b);
};

let standIn: StandIn;
let ctx: AppContext;
let close: () => Promise<void>;
let A: string;

beforeAll(async () => {
  ({ ctx, standIn, close } = await cloudAppContext());
  A = await userToken(randomUUID());
});
afterAll(() => close());

type Saved = { generation_id: string; project_id: string; version: number; sha256: string };
type Tier = 'archive' | 'folder' | 'cache' | 'outbox' | 'bucket';
const TIERS: Tier[] = ['archive', 'folder', 'cache', 'outbox', 'bucket'];

async function save(uploaded: boolean): Promise<Saved> {
  if (!uploaded) standIn.faults.failNext(1000, 503);
  const res = await ctx.app.request('http://storage.test/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' },
    body: JSON.stringify({ project_id: randomUUID(), files: sampleFiles(5, randomUUID()) }),
  });
  expect(res.status).toBe(201);
  const g = (await res.json()) as Saved;
  await ctx.uploads!.idle();
  standIn.faults.clear();
  return g;
}
const dirOf = (root: string, g: Saved) => join(root, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
const read = async (g: Saved) => {
  const res = await ctx.app.request(`http://storage.test/generations/${g.generation_id}/download`, { headers: { authorization: `Bearer ${A}` } });
  return { status: res.status, sha: sha256(new Uint8Array(await res.arrayBuffer())) };
};

/** Spoils one copy; false when the generation has no such copy in this state (the outbox once uploaded, the bucket before). */
async function spoil(g: Saved, tier: Tier, how: 'flip' | 'truncate'): Promise<boolean> {
  const local = dirOf(ctx.config.storagePath, g);
  const cached = dirOf(ctx.config.cachePath, g);
  const bad = (p: string) => (how === 'flip' ? flip(p) : truncateSync(p, 0));
  switch (tier) {
    case 'archive':
      if (!existsSync(`${local}.tar.gz`)) return false;
      bad(`${local}.tar.gz`);
      return true;
    case 'folder':
      if (!existsSync(local)) return false;
      writeFileSync(join(local, 'source', 'README.md'), 'changed behind our back\n');
      return true;
    case 'cache':
      if (!existsSync(`${cached}.tar.gz`)) return false;
      bad(`${cached}.tar.gz`);
      return true;
    case 'outbox': {
      const rows = await ctx.db.asService((tx) =>
        tx.query(`update codebegen_private.upload_outbox set archive = ${how === 'flip' ? `overlay(archive placing '\\x00'::bytea from 30 for 1)` : `'\\x'::bytea`} where generation_id = $1::uuid returning 1`, [g.generation_id]),
      );
      return rows.length > 0;
    }
    case 'bucket': {
      const path = standIn.objectPath('codebegen-projects', `${g.project_id}/generations/v${g.version}__${g.generation_id}.tar.gz`);
      if (!existsSync(path)) return false;
      bad(path);
      return true;
    }
  }
}

describe('reliability: every byte checked', () => {
  it('serves the exact recorded bytes from the next good copy, or an error when none is good; never other bytes', async () => {
    let reads = 0;
    let servedRight = 0;
    let refused = 0;
    let wrongBytesServed = 0;
    const cases: string[] = [];
    // every set of spoiled tiers (1 to 5 of them), on a generation uploaded and on one still in the outbox
    for (const uploaded of [true, false]) {
      for (let mask = 1; mask < 1 << TIERS.length; mask++) {
        const spoiled = TIERS.filter((_, i) => mask & (1 << i));
        for (const how of ['flip', 'truncate'] as const) {
          const g = await save(uploaded);
          // every tier holds the generation: the cache is filled by a read while the local copies are away
          const local = dirOf(ctx.config.storagePath, g);
          const backup = `${local}.backup`;
          cpSync(local, backup, { recursive: true });
          cpSync(`${local}.tar.gz`, `${backup}.tar.gz`);
          rmSync(local, { recursive: true });
          rmSync(`${local}.tar.gz`);
          expect((await read(g)).sha).toBe(g.sha256);
          await vi.waitFor(() => expect(existsSync(`${dirOf(ctx.config.cachePath, g)}.tar.gz`)).toBe(true)); // filled beside the answer
          renameSync(backup, local);
          renameSync(`${backup}.tar.gz`, `${local}.tar.gz`);
          for (const t of spoiled) await spoil(g, t, how);
          const got = await read(g);
          reads++;
          if (got.status === 200 && got.sha === g.sha256) servedRight++;
          else if (got.status === 200) {
            wrongBytesServed++;
            cases.push(`${uploaded ? 'uploaded' : 'pending'} ${how} ${spoiled.join('+')}`);
          } else {
            expect(got.status, `${spoiled.join('+')} ${how}`).toBeGreaterThanOrEqual(500);
            refused++;
          }
        }
      }
    }
    const rows = Number((await ctx.db.asService((tx) => tx.query<{ n: number }>('select count(*)::int as n from generations')))[0]!.n);
    const figures = report('integrity', { reads, served_right_bytes: servedRight, refused_no_good_copy: refused, wrong_bytes_served: wrongBytesServed, rows, rows_lost: reads - rows, set_aside: readdirSync(join(ctx.config.storagePath, '.codebegen-quarantine'), { withFileTypes: true }).length });
    expect(cases).toEqual([]);
    expect(figures.wrong_bytes_served).toBe(0);
    expect(figures.rows_lost).toBe(0);
    expect(servedRight).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  }, 240_000);
});
