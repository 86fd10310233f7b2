import type { Schema } from './validate.ts';

// The request schemas of the real server's routes (supabase/storage v1.70.6, src/http/routes/**), for the routes
// the stand-in answers. Fastify validates them before any handler or JWT check runs.

/** `authSchema`: every route built with `createDefaultSchema`, and the `/authenticated/` reads, require the header. */
export const AUTH_HEADERS: Schema = { type: 'object', properties: { authorization: { type: 'string' } }, required: ['authorization'] };

/** src/http/schemas/file-size-limit.ts */
const FILE_SIZE_LIMIT: Schema = {
  anyOf: [
    { type: 'integer', nullable: true, minimum: 0 },
    { type: 'string', nullable: true, pattern: '^[0-9]+(?:\\.[0-9]+)?(?:[gG][bB]|[mM][bB]|[kK][bB]|[bB])$' },
  ],
};
const MIME_TYPES: Schema = { type: 'array', nullable: true, items: { type: 'string' } };

export const CREATE_BUCKET: Schema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    id: { type: 'string' },
    public: { type: 'boolean' },
    type: { type: 'string', enum: ['STANDARD', 'ANALYTICS'] },
    file_size_limit: FILE_SIZE_LIMIT,
    allowed_mime_types: MIME_TYPES,
  },
  required: ['name'],
};

export const UPDATE_BUCKET: Schema = {
  type: 'object',
  minProperties: 1,
  properties: { public: { type: 'boolean' }, file_size_limit: FILE_SIZE_LIMIT, allowed_mime_types: MIME_TYPES },
  anyOf: [{ required: ['public'] }, { required: ['file_size_limit'] }, { required: ['allowed_mime_types'] }],
};

export const LIST_BUCKETS_QUERY: Schema = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1 },
    offset: { type: 'integer', minimum: 0 },
    sortColumn: { type: 'string', enum: ['id', 'name', 'created_at', 'updated_at'] },
    sortOrder: { type: 'string', enum: ['asc', 'desc'] },
    search: { type: 'string' },
  },
};

/** POST /object/list/:bucket: `prefix` is required (storage-js always sends it, `""` for the root). */
export const LIST_OBJECTS: Schema = {
  type: 'object',
  properties: {
    prefix: { type: 'string' },
    limit: { type: 'integer', minimum: 1 },
    offset: { type: 'integer', minimum: 0 },
    sortBy: {
      type: 'object',
      properties: {
        column: { type: 'string', enum: ['name', 'updated_at', 'created_at', 'last_accessed_at'] },
        order: { type: 'string', enum: ['asc', 'desc'] },
      },
      required: ['column'],
    },
    search: { type: 'string' },
  },
  required: ['prefix'],
};

/** POST /object/list-v2/:bucket: nothing required. */
export const LIST_OBJECTS_V2: Schema = {
  type: 'object',
  properties: {
    prefix: { type: 'string' },
    limit: { type: 'integer', minimum: 1 },
    cursor: { type: 'string' },
    with_delimiter: { type: 'boolean' },
    sortBy: {
      type: 'object',
      properties: { column: { type: 'string', enum: ['name', 'updated_at', 'created_at'] }, order: { type: 'string', enum: ['asc', 'desc'] } },
      required: ['column'],
    },
  },
};

const EXPIRES_IN: Schema = { type: 'integer', minimum: 1 };

export const SIGN_ONE: Schema = { type: 'object', properties: { expiresIn: EXPIRES_IN, transform: { type: 'object' } }, required: ['expiresIn'] };

export const SIGN_MANY: Schema = {
  type: 'object',
  properties: { expiresIn: EXPIRES_IN, paths: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1000 } },
  required: ['expiresIn', 'paths'],
};

export const DELETE_OBJECTS: Schema = {
  type: 'object',
  properties: { prefixes: { type: 'array', items: { type: 'string' }, minItems: 1 } },
  required: ['prefixes'],
};

/** Signed download and signed upload: the token is the credential. */
export const TOKEN_QUERY: Schema = { type: 'object', properties: { token: { type: 'string' } }, required: ['token'] };

export const DOWNLOAD_QUERY: Schema = { type: 'object', properties: { download: { type: 'string' } } };
