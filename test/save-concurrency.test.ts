import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appContext, userToken, type AppContext } from './helpers/context.ts';

// One large save must not hold everyone else up. On the embedded database every request shares one connection,
// so the save packs its archive outside any transaction, and holds the database only to commit the row, its
// bytes and its files. Health (a `select 1`) is asked all through a save near MAX_GENERATION_BYTES: its worst
// wait must be a fraction of the save's, not all of it (as when packing ran inside the transaction).

let ctx: AppContext;
let A: string;
beforeAll(async () => {
  ctx = await appContext({ MAX_REQUEST_BYTES: String(96 * 1024 * 1024) });
  A = await userToken(randomUUID());
});
afterAll(() => ctx.close());

describe('a large save', () => {
  it('leaves the database free while it packs: health answers within a fraction of the save', async () => {
    // ~40 MB of source that compresses like text (base64 of random bytes: ~75 % of its size, so deflate works hard)
    const files = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`data/part_${i}.txt`, randomBytes(750_000).toString('base64')]));
    const body = JSON.stringify({ project_id: randomUUID(), files });
    const health = async () => {
      const t0 = performance.now();
      const res = await ctx.app.request('http://storage.test/generations/health');
      expect(res.status).toBe(200);
      return performance.now() - t0;
    };
    await health(); // warm
    const t0 = performance.now();
    let done = false;
    const saving = Promise.resolve(
      ctx.app.request('http://storage.test/generations', { method: 'POST', headers: { authorization: `Bearer ${A}`, 'content-type': 'application/json' }, body }),
    ).finally(() => (done = true));
    const waits: number[] = [];
    while (!done) {
      waits.push(await health());
      await new Promise((r) => setTimeout(r, 10));
    }
    const res = await saving;
    const saveMs = performance.now() - t0;
    expect(res.status, await res.clone().text()).toBe(201);
    const worst = Math.max(...waits);
    console.log(`save ${saveMs.toFixed(0)} ms; ${waits.length} health checks meanwhile, worst ${worst.toFixed(0)} ms`);
    expect(waits.length).toBeGreaterThan(3);
    expect(worst, `worst health wait ${worst.toFixed(0)} ms during a ${saveMs.toFixed(0)} ms save`).toBeLessThan(saveMs * 0.6);
  }, 120_000);
});
