import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ERRORS } from './errors.ts';

export interface Bucket {
  id: string;
  name: string;
  owner: string;
  public: boolean;
  type: 'STANDARD';
  file_size_limit: number | null;
  allowed_mime_types: string[] | null;
  created_at: string;
  updated_at: string;
}

export interface StoredObject {
  id: string;
  /** Changes on every write, like the real `version` column. */
  version: string;
  bucket_id: string;
  name: string;
  owner: string | null;
  created_at: string;
  updated_at: string;
  last_accessed_at: string;
  /** The shape storage.objects.metadata has on the real server. */
  metadata: {
    eTag: string;
    size: number;
    mimetype: string;
    cacheControl: string;
    lastModified: string;
    contentLength: number;
    httpStatusCode: 200;
  };
  /** What the uploader sent as `x-metadata` (or the multipart `metadata` field); `{}` when nothing was sent. */
  user_metadata: Record<string, unknown>;
}

/** Bucket rows and object rows in memory (the database), object bytes on disk (the S3 backend). */
export class Store {
  readonly buckets = new Map<string, Bucket>();
  private readonly objects = new Map<string, StoredObject>();

  constructor(
    private readonly dir: string,
    private readonly now: () => number,
  ) {}

  timestamp(): string {
    return new Date(this.now()).toISOString();
  }

  /** Hashed so that keys `a` and `a/b` can both exist, as they can in S3. */
  objectPath(bucket: string, key: string): string {
    return join(this.dir, 'objects', createHash('sha256').update(`${bucket}/${key}`).digest('hex'));
  }

  bucket(id: string): Bucket {
    const bucket = this.buckets.get(id);
    if (!bucket) throw ERRORS.noSuchBucket();
    return bucket;
  }

  object(bucket: string, key: string): StoredObject | undefined {
    return this.objects.get(`${bucket}/${key}`);
  }

  objectsIn(bucket: string): StoredObject[] {
    return [...this.objects.values()].filter((o) => o.bucket_id === bucket);
  }

  async put(bucket: string, key: string, bytes: Uint8Array, mimetype: string, cacheControl: string, owner: string | null, userMetadata: Record<string, unknown> = {}) {
    const path = this.objectPath(bucket, key);
    await mkdir(join(this.dir, 'objects'), { recursive: true });
    await writeFile(path, bytes);
    const at = this.timestamp();
    const previous = this.object(bucket, key);
    const row: StoredObject = {
      id: previous?.id ?? randomUUID(),
      version: randomUUID(),
      bucket_id: bucket,
      name: key,
      owner,
      created_at: previous?.created_at ?? at,
      updated_at: at,
      last_accessed_at: at,
      metadata: {
        eTag: `"${createHash('md5').update(bytes).digest('hex')}"`,
        size: bytes.byteLength,
        mimetype,
        cacheControl,
        lastModified: at,
        contentLength: bytes.byteLength,
        httpStatusCode: 200,
      },
      user_metadata: { ...userMetadata },
    };
    this.objects.set(`${bucket}/${key}`, row);
    return row;
  }

  read(bucket: string, key: string): Promise<Buffer> {
    return readFile(this.objectPath(bucket, key));
  }

  async delete(bucket: string, key: string) {
    this.objects.delete(`${bucket}/${key}`);
    await rm(this.objectPath(bucket, key), { force: true });
  }
}
