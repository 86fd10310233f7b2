import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../archive/manifest.ts';
import type { PackedArchive } from '../archive/generation-archive.ts';

/**
 * Packed archives on their way to the bucket, in a folder of this run's own under `parent` (never under
 * STORAGE_PATH): each is written once, read back (and checked) for its upload, and dropped; `close()` removes
 * the folder, whatever happened.
 */
export class ArchiveCache {
  private dir: string | undefined;

  constructor(private readonly parent: string) {}

  /** Stores the archive; returns a handle to read it back. */
  async put(generationId: string, archive: PackedArchive): Promise<string> {
    this.dir ??= join(this.parent, `migration-${process.pid}-${randomUUID()}`);
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, `${generationId}.tar.gz`);
    await writeFile(path, archive.bytes);
    return path;
  }

  /** The archive's bytes, which must still have the sha256 they were packed with. */
  async get(path: string, sha256: string): Promise<Uint8Array> {
    const bytes = new Uint8Array(await readFile(path));
    if (sha256Hex(bytes) !== sha256) throw new Error(`[migration] cached archive ${path} changed on disk`);
    return bytes;
  }

  async drop(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  async close(): Promise<void> {
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}
