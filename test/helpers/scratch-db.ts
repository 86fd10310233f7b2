import { randomUUID } from 'node:crypto';
import postgres from 'postgres';

/** A database of its own on a real PostgreSQL server (a superuser URL), dropped by `drop()`. */
export async function scratchDatabase(adminUrl: string, prefix = 'cb_test'): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
