import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { AppContext } from './context.ts';

// The few calls the tests of files, diffs, zips and restores make to the generations app, in process.

export const BASE = 'http://storage.test/generations';
export const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

export interface Saved {
  generation_id: string;
  project_id: string;
  version: number;
  sha256: string;
  download_url: string;
  zip_url: string;
  pinned: boolean;
  storage: { status: string; local_path: string };
}

export function generationsClient(ctx: Pick<AppContext, 'app'>) {
  const req = async (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (init.token) headers.set('authorization', `Bearer ${init.token}`);
    return ctx.app.request(`${BASE}${path}`, { ...init, headers });
  };
  const json = (path: string, token: string | undefined, method: string, body: unknown) =>
    req(path, { method, token, headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return {
    req,
    json,
    /** Saves and expects a 201. */
    async save(token: string, body: Record<string, unknown>): Promise<Saved> {
      const res = await json('', token, 'POST', body);
      expect(res.status, await res.clone().text()).toBe(201);
      return (await res.json()) as Saved;
    },
    /** GET `path` as `token`, expecting `status`; the parsed JSON body. */
    async get<T = Record<string, any>>(path: string, token: string | undefined, status = 200): Promise<T> {
      const res = await req(path, { token });
      expect(res.status, `GET ${path}: ${await res.clone().text()}`).toBe(status);
      return (await res.json()) as T;
    },
    /** GET `path` as `token`; the bytes and the answer. */
    async bytes(path: string, token?: string, headers: Record<string, string> = {}): Promise<{ res: Response; bytes: Uint8Array }> {
      const res = await req(path, { token, headers });
      return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
    },
  };
}

export const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

/** The download URL as the in-process app takes it (without the /functions/v1 prefix the Node host adds). */
export const inProcess = (url: string) => url.replace('http://storage.test/functions/v1', 'http://storage.test');

/** Removes a generation's folder and archive from STORAGE_PATH and/or CACHE_PATH. */
export function dropCopies(ctx: Pick<AppContext, 'config'>, g: Pick<Saved, 'project_id' | 'generation_id' | 'version'>, where: { local?: boolean; cache?: boolean }): void {
  const roots = [...(where.local ? [ctx.config.storagePath] : []), ...(where.cache ? [ctx.config.cachePath] : [])];
  for (const root of roots) {
    const dir = join(root, g.project_id, 'generations', `v${g.version}__${g.generation_id}`);
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.tar.gz`, { force: true });
  }
}
